using MoECompress.Compression.Calibration;
using MoECompress.Compression.Importance;
using MoECompress.Formats.Errors;

namespace MoECompress.Compression.Pruning;

/// <summary>
/// Compares calibration profiles gathered on different tasks or domains (PreMoe's task-adaptive view): which experts
/// each profile ranks in its top <c>keep</c>, and how much those sets overlap.
/// </summary>
public static class ProfileComparison
{
    /// <summary>
    /// Per MoE layer, each profile's top-<paramref name="keep"/> experts under <paramref name="method"/> (a scorer that
    /// reads profiles: frequency, routing-weight, tcess, reap, stun; no protection or groups), the Jaccard overlap of each
    /// pair and the experts every profile keeps; plus each pair's mean Jaccard over layers.
    /// </summary>
    /// <param name="profiles">At least two named profiles of the same model shape.</param>
    /// <param name="keep">Experts per top set (1 … E).</param>
    /// <param name="method">Scorer name.</param>
    /// <exception cref="MoeCompressException">Usage: fewer than two profiles, duplicate names, profiles of different
    /// shapes, a keep outside 1 … E, an unknown method or one that needs the model (naee).</exception>
    public static ProfileComparisonReport Compare(IReadOnlyList<(string Name, CalibrationProfile Profile)> profiles, int keep, string method)
    {
        ArgumentNullException.ThrowIfNull(profiles);
        ArgumentNullException.ThrowIfNull(method);
        if (profiles.Count < 2)
            throw new MoeCompressException(ErrorKind.Usage, $"profiles compare: give at least two profiles (got {profiles.Count})");
        var duplicate = profiles.GroupBy(p => p.Name, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
            throw new MoeCompressException(ErrorKind.Usage, $"profiles compare: the name '{duplicate.Key}' is given twice; name every profile differently");
        var scorer = ExpertScorers.Get(method);
        if (scorer.RequiresActivations)
            throw new MoeCompressException(ErrorKind.Usage,
                $"--method {scorer.Name}: measures on the model's activations, not on a profile; compare with one of " +
                string.Join(", ", ExpertScorers.Names.Where(n => !ExpertScorers.Get(n).RequiresActivations)));

        var first = profiles[0];
        var layers = first.Profile.Layers.Select(l => l.Layer).ToList();
        var numExperts = first.Profile.Layers.Count == 0 ? 0 : first.Profile.Layers[0].NumExperts;
        foreach (var (name, profile) in profiles.Skip(1))
        {
            if (!profile.Layers.Select(l => l.Layer).SequenceEqual(layers) || profile.Layers.Any(l => l.NumExperts != numExperts))
                throw new MoeCompressException(ErrorKind.Usage,
                    $"profiles compare: '{name}' has MoE layers [{string.Join(", ", profile.Layers.Select(l => l.Layer))}] of " +
                    $"{profile.Layers.FirstOrDefault()?.NumExperts ?? 0} experts, '{first.Name}' [{string.Join(", ", layers)}] of {numExperts}; " +
                    "compare profiles of the same model");
        }
        if (layers.Count == 0)
            throw new MoeCompressException(ErrorKind.Usage, $"profiles compare: '{first.Name}' has no MoE layers");
        if (keep < 1 || keep > numExperts)
            throw new MoeCompressException(ErrorKind.Usage, $"--keep {keep}: must be between 1 and the {numExperts} experts per layer");

        var request = new KeepRequest { Keep = keep, Layers = layers };
        var tops = profiles.Select(p =>
        {
            var context = new ExpertScoringContext { Profile = p.Profile };
            return scorer.SelectKept(context, scorer.Score(context), request);
        }).ToList();

        var pairs = new List<(int A, int B)>();
        for (var a = 0; a < profiles.Count; a++)
            for (var b = a + 1; b < profiles.Count; b++)
                pairs.Add((a, b));

        var layerReports = new List<LayerOverlap>();
        foreach (var layer in layers)
        {
            var sets = tops.Select(t => t[layer].Kept).ToList();
            var shared = sets.Skip(1).Aggregate((IEnumerable<int>)sets[0], (acc, s) => acc.Intersect(s)).Order().ToList();
            layerReports.Add(new LayerOverlap(layer,
                profiles.Select((p, i) => KeyValuePair.Create(p.Name, (IReadOnlyList<int>)sets[i].Order().ToList())).ToList(),
                pairs.Select(pair => Overlap(profiles[pair.A].Name, profiles[pair.B].Name, sets[pair.A], sets[pair.B])).ToList(),
                shared));
        }
        var means = pairs.Select((pair, i) => new ProfileOverlap(profiles[pair.A].Name, profiles[pair.B].Name,
            layerReports.Average(l => l.Pairs[i].Jaccard), layerReports.Sum(l => l.Pairs[i].Common))).ToList();

        return new ProfileComparisonReport
        {
            Method = scorer.Name,
            Keep = keep,
            NumExperts = numExperts,
            Profiles = profiles.Select(p => KeyValuePair.Create(p.Name,
                $"{p.Profile.Tokens:N0} tokens of {new ProfileSource(null, p.Profile.Data, p.Profile.Tokens, p.Profile.CreatedUtc).DescribeData()}")).ToList(),
            Layers = layerReports,
            MeanOverlaps = means,
        };
    }

    /// <summary>Jaccard overlap |A ∩ B| / |A ∪ B| of two expert sets (1 when both are empty).</summary>
    public static double Jaccard(IEnumerable<int> a, IEnumerable<int> b)
    {
        var setA = a.ToHashSet();
        var union = setA.Union(b).Count();
        return union == 0 ? 1.0 : (double)setA.Intersect(b).Count() / union;
    }

    private static ProfileOverlap Overlap(string first, string second, IReadOnlyList<int> a, IReadOnlyList<int> b) =>
        new(first, second, Jaccard(a, b), a.Intersect(b).Count());
}
