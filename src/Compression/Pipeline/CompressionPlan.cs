using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;

namespace MoECompress.Compression.Pipeline;

/// <summary>What <see cref="CompressionPipeline"/> will do, checked against the model's config (<c>compress --dry-run</c>).</summary>
/// <param name="Model">The input folder.</param>
/// <param name="Family">The model family.</param>
/// <param name="MoELayers">MoE layers of the model.</param>
/// <param name="Experts">Routed experts per MoE layer of the input.</param>
/// <param name="TopK">Experts per token.</param>
/// <param name="Recipe">The recipe.</param>
/// <param name="Steps">Each step with its expert counts and where its statistics come from.</param>
/// <param name="CalibrationPasses">Calibration passes the run will make.</param>
public sealed record CompressionPlan(string Model, string Family, int MoELayers, int Experts, int TopK, CompressionRecipe Recipe,
    IReadOnlyList<CompressionPlan.Step> Steps, int CalibrationPasses)
{
    private static readonly CultureInfo C = CultureInfo.InvariantCulture;

    /// <summary>One planned step.</summary>
    /// <param name="Index">0-based position in the recipe.</param>
    /// <param name="Definition">The step.</param>
    /// <param name="ExpertsBefore">Routed experts per layer of its input.</param>
    /// <param name="ExpertsAfter">Of its output (with global pruning: the average aimed at).</param>
    /// <param name="Statistics">Where its calibration statistics come from.</param>
    public sealed record Step(int Index, CompressionStep Definition, int ExpertsBefore, int ExpertsAfter, string Statistics)
    {
        /// <summary>The step in a few words.</summary>
        public string Describe() => Definition switch
        {
            PruneStep p => $"{p.Method ?? Pruning.Pruner.DefaultMethod}, {ExpertsBefore} → {ExpertsAfter} experts per layer{(p.Global ? " on average (global)" : "")}",
            MergeStep m => $"{m.Method.ToString().ToLowerInvariant()}, {ExpertsBefore} → {ExpertsAfter} experts per layer",
            QuantizeStep q => $"{q.Method.ToString().ToLowerInvariant()}, " +
                (q.Bits is { } b ? $"{b.ToString(C)} bits{(q.Uniform ? " uniform" : " on average")}" : $"{q.Size} bytes") +
                $", format {Formats.Quantized.QuantizedFormats.ToName(q.Format)}, granularity {q.Granularity.ToString().ToLowerInvariant()}",
            _ => Definition.Kind,
        };
    }

    /// <summary>The plan as JSON.</summary>
    public JsonObject ToJsonObject() => new()
    {
        ["model"] = Model,
        ["family"] = Family,
        ["moe_layers"] = MoELayers,
        ["experts"] = Experts,
        ["top_k"] = TopK,
        ["calibration"] = new JsonObject
        {
            ["data"] = Recipe.Calibration.Data ?? "(bundled calibration set)",
            ["samples"] = Recipe.Calibration.Samples,
            ["seq_len"] = Recipe.Calibration.SeqLen,
            ["seed"] = Recipe.Calibration.Seed,
            ["passes"] = CalibrationPasses,
        },
        ["steps"] = new JsonArray(Steps.Select(s => (JsonNode)new JsonObject
        {
            ["step"] = s.Definition.Kind,
            ["summary"] = s.Describe(),
            ["experts_before"] = s.ExpertsBefore,
            ["experts_after"] = s.ExpertsAfter,
            ["statistics"] = s.Statistics,
        }).ToArray()),
        ["evaluate"] = Recipe.Evaluate is { } e ? new JsonObject { ["data"] = e.Data ?? "(bundled held-out text)", ["tokens"] = e.Tokens } : null,
    };

    /// <summary>The plan as Markdown.</summary>
    public string ToMarkdown()
    {
        var sb = new StringBuilder();
        sb.Append(C, $"## Plan: {Model}\n\n{Family}, {MoELayers} MoE layers × {Experts} routed experts, top-{TopK}.\n\n");
        var cal = Recipe.Calibration;
        sb.Append(C, $"Calibration: {(cal.Samples == 0 ? "every window" : $"{cal.Samples} sequences")} × {cal.SeqLen} tokens of {cal.Data ?? "the bundled calibration set"} (seed {cal.Seed}), drawn once; {CalibrationPasses} calibration pass(es).\n\n");
        sb.Append("| # | step | what | statistics |\n|---|---|---|---|\n");
        foreach (var s in Steps) sb.Append(C, $"| {s.Index} | {s.Definition.Kind} | {s.Describe()} | {s.Statistics} |\n");
        sb.Append('\n');
        sb.Append(Recipe.Evaluate is { } e
            ? $"Evaluation: the output against the original on {e.Data ?? "the bundled held-out text"}{(e.Tokens is { } t ? $", at most {t.ToString("N0", C)} tokens" : "")}.\n"
            : "Evaluation: none (add `evaluate:` to the recipe).\n");
        return sb.ToString();
    }
}
