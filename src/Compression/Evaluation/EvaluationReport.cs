using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace MoECompress.Compression.Evaluation;

/// <summary>
/// The result of <see cref="Evaluator.RunAsync"/>: what was evaluated (model, base, data, settings, tool version) and
/// the <see cref="EvaluationMetrics"/>. <see cref="ToJson"/> and <see cref="ToMarkdown"/> render it; the caller writes
/// the files.
/// </summary>
public sealed record EvaluationReport
{
    /// <summary>Version of moe-compress that produced the report.</summary>
    public required string ToolVersion { get; init; }
    /// <summary>The evaluated model.</summary>
    public required EvaluatedModel Model { get; init; }
    /// <summary>The base model compared against, or null.</summary>
    public EvaluatedModel? Base { get; init; }
    /// <summary>Full path of the held-out text (file or folder).</summary>
    public required string DataPath { get; init; }
    /// <summary>The files read, in stream order.</summary>
    public required IReadOnlyList<string> DataFiles { get; init; }
    /// <summary>Documents read.</summary>
    public required int Documents { get; init; }
    /// <summary>The tokenizer (implementation and file).</summary>
    public required string Tokenizer { get; init; }
    /// <summary>Whether the stream starts with BOS.</summary>
    public required bool BosPrepended { get; init; }
    /// <summary>Tokens in the tokenized text, before <see cref="MaxTokens"/> is applied.</summary>
    public required int TextTokens { get; init; }
    /// <summary>The cap on evaluated tokens, or null.</summary>
    public int? MaxTokens { get; init; }
    /// <summary>Tokens per micro-batch pushed through a layer.</summary>
    public required int MicroBatchTokens { get; init; }
    /// <summary>The measured figures (context, stride, windows and tokens scored included).</summary>
    public required EvaluationMetrics Metrics { get; init; }
    /// <summary>Wall-clock seconds of the whole evaluation.</summary>
    public double ElapsedSeconds { get; init; }
    /// <summary>Auxiliary experts per token when the model is substituted (config.json compressed_experts), else null.</summary>
    public int? CompressedExpertsAux { get; init; }
    /// <summary>The skip plan applied to the model (<c>--skip-plan</c>), or null.</summary>
    public string? SkipPlanPath { get; init; }
    /// <summary>Per planned layer: the expert calls the skip plan saved on the evaluated text.</summary>
    public IReadOnlyList<Substitution.ExpertSkipLayerReport> Skipping { get; init; } = [];

    private static readonly JsonSerializerOptions Indented = new()
    {
        WriteIndented = true,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping, // keep ‖, Σ, − readable; the output is a file, not HTML
    };

    /// <summary>The report as indented JSON (snake_case keys; non-finite numbers as null).</summary>
    public string ToJson() => ToJsonObject().ToJsonString(Indented);

    /// <summary>The report as a JSON object.</summary>
    public JsonObject ToJsonObject()
    {
        var m = Metrics;
        var results = new JsonObject
        {
            ["windows"] = m.Windows,
            ["stream_tokens"] = m.StreamTokens,
            ["tokens_scored"] = m.TokensScored,
            ["mean_nll"] = Num(m.MeanNll),
            ["perplexity"] = Num(m.Perplexity),
        };
        if (Base is not null)
        {
            results["base_mean_nll"] = Num(m.BaseMeanNll);
            results["base_perplexity"] = Num(m.BasePerplexity);
            results["mean_kl"] = Num(m.MeanKl);
            results["max_kl"] = Num(m.MaxKl);
            results["top1_agreement"] = Num(m.Top1Agreement);
        }
        var root = new JsonObject
        {
            ["tool"] = "moe-compress",
            ["tool_version"] = ToolVersion,
            ["model"] = ModelJson(Model),
            ["base"] = Base is null ? null : ModelJson(Base),
            ["data"] = new JsonObject
            {
                ["path"] = DataPath,
                ["files"] = new JsonArray(DataFiles.Select(f => (JsonNode?)JsonValue.Create(f)).ToArray()),
                ["documents"] = Documents,
                ["tokenizer"] = Tokenizer,
                ["bos_prepended"] = BosPrepended,
                ["text_tokens"] = TextTokens,
            },
            ["settings"] = new JsonObject
            {
                ["context"] = m.Context,
                ["stride"] = m.Stride,
                ["max_tokens"] = MaxTokens,
                ["micro_batch_tokens"] = MicroBatchTokens,
                ["targets"] = "sliding window: a window of `context` tokens starts every `stride` tokens; only tokens not " +
                              "reached by the previous window are scored (the first window scores all but its first token)",
            },
            ["results"] = results,
        };
        if (Base is not null)
        {
            root["kl_definition"] = "mean over scored positions of KL(p_base ‖ p_model) = Σ_v p_base(v)·(log p_base(v) − log p_model(v)), nats";
            root["layer_errors"] = new JsonObject
            {
                ["definition"] = LayerError.Definition,
                ["layers"] = new JsonArray(m.LayerErrors.Select(e => (JsonNode?)new JsonObject
                {
                    ["layer"] = e.Layer,
                    ["relative_error"] = Num(e.RelativeError),
                    ["mean_token_relative_error"] = Num(e.MeanTokenRelativeError),
                }).ToArray()),
            };
        }
        if (CompressedExpertsAux is { } aux) root["compressed_experts"] = new JsonObject { ["aux"] = aux };
        if (SkipPlanPath is not null)
            root["skipping"] = new JsonObject
            {
                ["plan"] = SkipPlanPath,
                ["layers"] = new JsonArray(Skipping.Select(l => (JsonNode?)new JsonObject
                {
                    ["layer"] = l.Layer,
                    ["mu"] = Num(l.Mu),
                    ["norm_threshold"] = Num(l.NormThreshold),
                    ["tokens"] = l.Tokens,
                    ["expert_calls"] = l.ExpertCalls,
                    ["skipped_calls"] = l.SkippedCalls,
                    ["skipped_fraction"] = Num(l.SkippedFraction),
                    ["protected_tokens"] = l.ProtectedTokens,
                }).ToArray()),
            };
        root["notes"] = new JsonArray(m.Notes.Select(n => (JsonNode?)JsonValue.Create(n)).ToArray());
        root["elapsed_seconds"] = Num(Math.Round(ElapsedSeconds, 3));
        return root;
    }

    /// <summary>A compact Markdown summary: one table of results, the provenance, and the per-layer errors.</summary>
    public string ToMarkdown()
    {
        var m = Metrics;
        var sb = new StringBuilder();
        sb.Append("# Evaluation: ").Append(System.IO.Path.GetFileName(Model.Path.TrimEnd('/', '\\'))).Append("\n\n");
        if (Base is null)
        {
            sb.Append("| metric | model |\n|---|---:|\n");
            sb.Append("| perplexity | ").Append(F(m.Perplexity, 4)).Append(" |\n");
            sb.Append("| mean NLL (nats/token) | ").Append(F(m.MeanNll, 5)).Append(" |\n");
        }
        else
        {
            sb.Append("| metric | model | base |\n|---|---:|---:|\n");
            sb.Append("| perplexity | ").Append(F(m.Perplexity, 4)).Append(" | ").Append(F(m.BasePerplexity, 4)).Append(" |\n");
            sb.Append("| mean NLL (nats/token) | ").Append(F(m.MeanNll, 5)).Append(" | ").Append(F(m.BaseMeanNll, 5)).Append(" |\n");
            sb.Append("| mean KL(base ‖ model) (nats/token) | ").Append(F(m.MeanKl, 6)).Append(" | |\n");
            sb.Append("| max KL per token (nats) | ").Append(F(m.MaxKl, 4)).Append(" | |\n");
            sb.Append("| top-1 agreement | ").Append(m.Top1Agreement is { } a ? (a * 100).ToString("F2", CultureInfo.InvariantCulture) + "%" : "–").Append(" | |\n");
        }
        sb.Append('\n');
        sb.Append("- model: `").Append(Model.Path).Append("` (").Append(Describe(Model)).Append(")\n");
        if (Base is not null) sb.Append("- base: `").Append(Base.Path).Append("` (").Append(Describe(Base)).Append(")\n");
        sb.Append("- data: `").Append(DataPath).Append("`: ").Append(DataFiles.Count).Append(" file(s), ")
          .Append(Documents).Append(" document(s), ").Append(N(TextTokens)).Append(" tokens")
          .Append(BosPrepended ? " (BOS first)" : "").Append("; tokenizer ").Append(Tokenizer).Append('\n');
        sb.Append("- windows: ").Append(N(m.Windows)).Append(" of context ").Append(m.Context).Append(", stride ").Append(m.Stride)
          .Append("; ").Append(N(m.StreamTokens)).Append(" tokens evaluated")
          .Append(MaxTokens is { } cap ? $" (capped at {N(cap)})" : "")
          .Append(", ").Append(N(m.TokensScored)).Append(" scored (each once)\n");
        sb.Append("- moe-compress ").Append(ToolVersion).Append(", ").Append(ElapsedSeconds.ToString("F1", CultureInfo.InvariantCulture)).Append(" s\n");
        if (CompressedExpertsAux is { } aux)
            sb.Append("- compressed experts: the last ").Append(aux).Append(" of each token's top-k experts replaced by trained vectors\n");
        foreach (var note in m.Notes) sb.Append("- note: ").Append(note).Append('\n');
        if (SkipPlanPath is not null)
        {
            sb.Append("\n## Dynamic expert skipping\n\n- plan: `").Append(SkipPlanPath).Append("`\n\n");
            sb.Append("| layer | μ | expert calls | skipped | saved | protected tokens |\n|---:|---:|---:|---:|---:|---:|\n");
            foreach (var l in Skipping)
                sb.Append("| ").Append(l.Layer).Append(" | ").Append(F(l.Mu, 4)).Append(" | ").Append(N(l.ExpertCalls)).Append(" | ")
                  .Append(N(l.SkippedCalls)).Append(" | ").Append((100 * l.SkippedFraction).ToString("F1", CultureInfo.InvariantCulture)).Append("% | ")
                  .Append(N(l.ProtectedTokens)).Append(" |\n");
        }

        if (Base is not null && m.LayerErrors.Count > 0)
        {
            sb.Append("\n## Hidden-state error per decoder layer\n\n");
            sb.Append(LayerError.Definition).Append(".\n\n");
            sb.Append("| layer | ‖ΔH‖_F / ‖H_base‖_F | mean per-token |\n|---:|---:|---:|\n");
            foreach (var e in m.LayerErrors)
                sb.Append("| ").Append(e.Layer).Append(" | ").Append(F(e.RelativeError, 6)).Append(" | ").Append(F(e.MeanTokenRelativeError, 6)).Append(" |\n");
        }
        return sb.ToString();
    }

    private static JsonObject ModelJson(EvaluatedModel model) => new()
    {
        ["path"] = model.Path,
        ["family"] = model.Family,
        ["experts"] = model.Experts,
        ["layers"] = model.Layers,
        ["weight_bytes"] = model.WeightBytes,
    };

    private static string Describe(EvaluatedModel model) =>
        $"{model.Family}, {model.Layers} layers, {model.Experts} experts, {(model.WeightBytes / 1048576.0).ToString("N1", CultureInfo.InvariantCulture)} MiB of weights";

    private static JsonNode? Num(double? value) => value is { } v && double.IsFinite(v) ? JsonValue.Create(v) : null;

    private static string F(double? value, int digits) =>
        value is not { } v ? "–" : double.IsFinite(v) ? v.ToString("F" + digits, CultureInfo.InvariantCulture) : v.ToString(CultureInfo.InvariantCulture);

    private static string N(long value) => value.ToString("N0", CultureInfo.InvariantCulture);
}
