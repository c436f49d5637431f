using MoECompress.Formats.Errors;
using MoECompress.Formats.Gguf;

namespace MoECompress.Compression.Gguf;

/// <summary>One choice for an allocation item: a ggml type, the bytes it takes and its measured weighted error.</summary>
public sealed record GgufTypeChoice(GgmlType Type, long Bytes, double Error);

/// <summary>
/// Chooses one ggml type per (layer, projection) of routed experts under a byte budget: a multiple-choice knapsack
/// solved greedily on each item's lower convex hull of (bytes, error) — start every item at its smallest choice, then
/// repeatedly take the upgrade with the largest error reduction per extra byte that still fits. With convex hulls this
/// is the LP relaxation's solution up to the last partial step (which is skipped), so it is within one item's upgrade
/// of the optimum. Errors are importance-weighted squared errors Σ imp·(w − ŵ)² (a diagonal proxy for the output error).
/// </summary>
public static class GgufTypeAllocator
{
    /// <summary>Index into each item's choices, one per item.</summary>
    public static int[] Allocate(IReadOnlyList<IReadOnlyList<GgufTypeChoice>> items, long budgetBytes, string budgetOption)
    {
        var hulls = items.Select(Hull).ToList();
        var position = new int[items.Count];
        long used = 0;
        for (var i = 0; i < items.Count; i++) used += items[i][hulls[i][0]].Bytes;
        if (used > budgetBytes)
            throw new MoeCompressException(ErrorKind.Infeasible,
                $"{budgetOption}: the routed experts need at least {used} bytes at the smallest types, the budget leaves {budgetBytes}");
        while (true)
        {
            var best = -1;
            var bestRatio = 0.0;
            for (var i = 0; i < items.Count; i++)
            {
                if (position[i] + 1 >= hulls[i].Count) continue;
                var (a, b) = (items[i][hulls[i][position[i]]], items[i][hulls[i][position[i] + 1]]);
                var extra = b.Bytes - a.Bytes;
                if (used + extra > budgetBytes) continue;
                var ratio = (a.Error - b.Error) / Math.Max(1, extra);
                if (best < 0 || ratio > bestRatio) { best = i; bestRatio = ratio; }
            }
            if (best < 0) break;
            used += items[best][hulls[best][position[best] + 1]].Bytes - items[best][hulls[best][position[best]]].Bytes;
            position[best]++;
        }
        return position.Select((p, i) => hulls[i][p]).ToArray();
    }

    /// <summary>Indices of the lower convex hull of (bytes, error), by increasing bytes and decreasing error.</summary>
    private static List<int> Hull(IReadOnlyList<GgufTypeChoice> choices)
    {
        var order = Enumerable.Range(0, choices.Count).OrderBy(i => choices[i].Bytes).ThenBy(i => choices[i].Error).ToList();
        var hull = new List<int>();
        foreach (var i in order)
        {
            if (hull.Count > 0 && choices[i].Error >= choices[hull[^1]].Error) continue; // more bytes, no better
            if (hull.Count > 0 && choices[i].Bytes == choices[hull[^1]].Bytes) hull.RemoveAt(hull.Count - 1);
            while (hull.Count >= 2)
            {
                var (a, b) = (choices[hull[^2]], choices[hull[^1]]);
                var c = choices[i];
                // b lies on or above the segment a–c: drop it.
                if ((b.Error - a.Error) * (c.Bytes - a.Bytes) >= (c.Error - a.Error) * (b.Bytes - a.Bytes)) hull.RemoveAt(hull.Count - 1);
                else break;
            }
            hull.Add(i);
        }
        return hull;
    }
}
