namespace MoECompress.Compression.Pruning;

/// <summary>
/// Global pruning's threshold: ranks every (layer, expert) by its per-layer normalised score and removes the lowest,
/// ascending (ties: lower layer first, then the higher expert index, as <see cref="Importance.KeptExpertChooser.TopByScore"/>
/// keeps the lower index on ties), skipping protected experts and any removal that would leave
/// a layer with fewer than the minimum count, until the requested number is removed or nothing more can go.
/// </summary>
public static class GlobalExpertBudget
{
    /// <summary>Experts each layer keeps under the global threshold (k_l), and which ones it removes.</summary>
    /// <param name="normalizedScores">Layer → normalised scores (comparable across layers), one per expert.</param>
    /// <param name="remove">Experts to remove over all layers.</param>
    /// <param name="minKeep">Fewest experts a layer may keep (at least top-k).</param>
    /// <param name="protectedExperts">Layer → experts never removed (null: none).</param>
    /// <returns>Layer → (k_l, removed experts ascending).</returns>
    public static IReadOnlyDictionary<int, (int Keep, IReadOnlyList<int> Removed)> Allocate(
        IReadOnlyDictionary<int, double[]> normalizedScores, int remove, int minKeep,
        IReadOnlyDictionary<int, IReadOnlyCollection<int>>? protectedExperts = null)
    {
        ArgumentNullException.ThrowIfNull(normalizedScores);
        if (remove < 0) throw new ArgumentOutOfRangeException(nameof(remove), remove, "must not be negative");
        var kept = normalizedScores.ToDictionary(kv => kv.Key, kv => kv.Value.Length);
        var removed = normalizedScores.ToDictionary(kv => kv.Key, _ => new List<int>());
        var ranked = normalizedScores
            .SelectMany(kv => kv.Value.Select((s, e) => (Layer: kv.Key, Expert: e, Score: s)))
            .OrderBy(x => x.Score).ThenBy(x => x.Layer).ThenByDescending(x => x.Expert);
        var done = 0;
        foreach (var (layer, expert, _) in ranked)
        {
            if (done == remove) break;
            if (protectedExperts is not null && protectedExperts.TryGetValue(layer, out var p) && p.Contains(expert)) continue;
            if (kept[layer] - 1 < minKeep) continue;
            kept[layer]--;
            removed[layer].Add(expert);
            done++;
        }
        return kept.ToDictionary(kv => kv.Key,
            kv => (kv.Value, (IReadOnlyList<int>)removed[kv.Key].Order().ToList()));
    }
}
