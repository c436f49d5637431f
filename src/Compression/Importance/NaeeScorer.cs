using System.Globalization;
using MoECompress.Compression.Calibration;
using MoECompress.Formats.Errors;

namespace MoECompress.Compression.Importance;

/// <summary>
/// "naee" (Lu et al. 2024, "Not All Experts are Equal: Efficient Expert Pruning and Skipping for Mixture-of-Experts
/// Large Language Models"): for a target E' per layer, removes the subset of experts whose removal least changes the
/// MoE block's output on the calibration tokens, error(R) = Σ_t ‖block(x_t) with experts R never routed to − block(x_t)‖²
/// (<see cref="MaskedBlockError"/>; every layer measured on the original model's inputs). The subset is searched
/// exhaustively while the number of admissible subsets is at most <see cref="ExhaustiveLimit"/>, greedily beyond it
/// (<see cref="NaeeSubsetSearch"/>). Protected experts are never removed; with expert groups every group loses the same
/// number. The score of expert i is error({i}), the output error when it alone is removed.
/// Each call (<see cref="Score"/>, <see cref="SelectKept"/>) streams the calibration tokens through the model once,
/// caching one layer's block inputs and outputs (2 × N × H floats) at a time.
/// </summary>
public sealed class NaeeScorer : IExpertScorer
{
    /// <summary>The registry name.</summary>
    public const string ScorerName = "naee";

    /// <summary>Default <see cref="ExhaustiveLimit"/>.</summary>
    public const long DefaultExhaustiveLimit = 5000;

    /// <summary>Creates the scorer.</summary>
    /// <param name="exhaustiveLimit">Largest number of subsets per layer searched exhaustively (0: always greedy).</param>
    public NaeeScorer(long exhaustiveLimit = DefaultExhaustiveLimit)
    {
        if (exhaustiveLimit < 0)
            throw new MoeCompressException(ErrorKind.Usage, $"--naee-exhaustive-limit {exhaustiveLimit} must not be negative");
        ExhaustiveLimit = exhaustiveLimit;
    }

    /// <summary>Largest number of subsets per layer searched exhaustively.</summary>
    public long ExhaustiveLimit { get; }

    /// <inheritdoc />
    public string Name => ScorerName;

    /// <inheritdoc />
    public string Description =>
        "NAEE: the expert subset whose removal least changes the MoE block output on calibration tokens (exhaustive, greedy beyond a limit)";

    /// <inheritdoc />
    public bool RequiresActivations => true;

    /// <inheritdoc />
    public ExpertScores Score(ExpertScoringContext context, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(context);
        var layers = new Dictionary<int, double[]>();
        RunPass(context, context.Profile.Layers.Select(l => l.Layer).ToHashSet(), (layer, error) =>
        {
            var scores = new double[error.NumExperts];
            for (var e = 0; e < scores.Length; e++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                scores[e] = error.Error([e]);
            }
            layers[layer] = scores;
            context.Progress?.Report($"naee: layer {layer}: single-expert removal errors over {error.Tokens:N0} tokens");
        }, cancellationToken);
        return new ExpertScores(Name, layers);
    }

    /// <inheritdoc />
    public IReadOnlyDictionary<int, LayerSelection> SelectKept(ExpertScoringContext context, ExpertScores scores, KeepRequest request,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(request);
        var wanted = (request.Layers ?? context.Profile.Layers.Select(l => l.Layer).ToList()).ToHashSet();
        var groups = Math.Max(1, request.Groups);
        foreach (var layer in wanted)
            KeptExpertChooser.CheckFeasible(layer, context.Profile.Layer(layer).NumExperts, request.Keep, groups, request.ProtectedIn(layer));
        var result = new SortedDictionary<int, LayerSelection>();
        RunPass(context, wanted, (layer, error) =>
        {
            var e = error.NumExperts;
            var search = NaeeSubsetSearch.Search(e, e - request.Keep, groups, request.ProtectedIn(layer), ExhaustiveLimit,
                error.Error, cancellationToken);
            var kept = Enumerable.Range(0, e).Except(search.Removed).ToArray();
            var rule = search.Exhaustive
                ? string.Create(CultureInfo.InvariantCulture, $"exhaustive search over {search.Subsets:N0} subsets")
                : string.Create(CultureInfo.InvariantCulture,
                    $"greedy search ({search.Evaluated:N0} evaluations; {(search.Subsets == long.MaxValue ? "too many" : search.Subsets.ToString("N0", CultureInfo.InvariantCulture))} subsets exceed the exhaustive limit {ExhaustiveLimit:N0})");
            if (groups > 1) rule += $", {request.Keep / groups} kept per group";
            result[layer] = new LayerSelection(layer, kept, rule, search.Error);
            context.Progress?.Report($"naee: layer {layer}: {rule}; removed [{string.Join(", ", search.Removed)}], output error {search.Error:G4}");
        }, cancellationToken);
        var missing = wanted.Except(result.Keys).ToList();
        if (missing.Count > 0)
            throw new MoeCompressException(ErrorKind.Internal, $"naee: layers [{string.Join(", ", missing)}] produced no MoE activations");
        return result;
    }

    private static void RunPass(ExpertScoringContext context, IReadOnlySet<int> layers, Action<int, MaskedBlockError> onLayer,
        CancellationToken cancellationToken)
    {
        var checkpoint = context.Checkpoint ?? throw new MoeCompressException(ErrorKind.Usage,
            "naee measures on calibration activations: it needs the model checkpoint, not only a profile");
        var tokens = context.Tokens ?? throw new MoeCompressException(ErrorKind.Usage,
            "naee measures on calibration activations: it needs calibration tokens");
        using var observer = new NaeeObserver(layers, onLayer);
        CalibrationPass.Run(checkpoint, tokens, observer, context.Streaming, context.Progress, cancellationToken);
    }
}
