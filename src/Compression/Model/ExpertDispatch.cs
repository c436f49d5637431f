namespace MoECompress.Compression.Model;

/// <summary>
/// Counting sort of a routing decision's (token, slot) pairs by expert id, the dispatch order of the MoE forward:
/// the slots of expert e are <c>SlotOrder[Starts[e] .. Starts[e + 1])</c>, tokens ascending within each expert.
/// </summary>
internal sealed class ExpertDispatch
{
    private ExpertDispatch(int[] starts, long[] slotOrder)
    {
        Starts = starts;
        SlotOrder = slotOrder;
    }

    /// <summary>First position of each expert in <see cref="SlotOrder"/> (E + 1 entries).</summary>
    public int[] Starts { get; }
    /// <summary>Flat slot indices (token × slots per token + slot) grouped by expert.</summary>
    public long[] SlotOrder { get; }

    public int Count(int expert) => Starts[expert + 1] - Starts[expert];

    /// <summary>The slots of one expert.</summary>
    public long[] Slots(int expert) => SlotOrder.AsSpan(Starts[expert], Count(expert)).ToArray();

    /// <param name="chosen">Expert of every flat slot.</param>
    /// <param name="numExperts">Experts of the layer.</param>
    /// <param name="active">Slots to dispatch (null: all).</param>
    public static ExpertDispatch Sort(long[] chosen, int numExperts, bool[]? active = null)
    {
        var counts = new int[numExperts];
        for (var s = 0; s < chosen.Length; s++)
            if (active is null || active[s]) counts[chosen[s]]++;
        var starts = new int[numExperts + 1];
        for (var e = 0; e < numExperts; e++) starts[e + 1] = starts[e] + counts[e];
        var fill = (int[])starts.Clone();
        var slotOrder = new long[starts[^1]];
        for (var s = 0; s < chosen.Length; s++)
            if (active is null || active[s]) slotOrder[fill[chosen[s]]++] = s;
        return new ExpertDispatch(starts, slotOrder);
    }
}
