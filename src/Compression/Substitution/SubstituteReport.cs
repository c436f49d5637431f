using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;

namespace MoECompress.Compression.Substitution;

/// <summary>What <see cref="Substituter.Run"/> did: the export, active parameters per token before and after, and per MoE layer the training curve and block error.</summary>
public sealed record SubstituteReport
{
    public const string LossCsvFile = "substitution-loss.csv";
    public const string ReportJsonFile = "substitution-report.json";
    public const string ReportMarkdownFile = "substitution-report.md";

    public required string Model { get; init; }
    public required string Output { get; init; }
    public required SubstituteExport Export { get; init; }
    public required int TopK { get; init; }
    public required int Aux { get; init; }
    /// <summary>Training device ("cpu", "cuda"); null for the reduced-top-k export.</summary>
    public string? Device { get; init; }
    public CompressedExpertTraining? Training { get; init; }
    public int CalibrationSequences { get; init; }
    public long CalibrationTokens { get; init; }
    public required long ActiveParametersBefore { get; init; }
    public required long ActiveParametersAfter { get; init; }
    public required long TotalParametersBefore { get; init; }
    public required long TotalParametersAfter { get; init; }
    public IReadOnlyList<LayerTrainingResult> Layers { get; init; } = [];
    public required double ElapsedSeconds { get; init; }

    /// <summary>layer,step,loss rows (relative squared error of each step's batch).</summary>
    public string LossCsv()
    {
        var sb = new StringBuilder("layer,step,relative_squared_error\n");
        foreach (var l in Layers)
            for (var s = 0; s < l.Loss.Count; s++)
                sb.Append(CultureInfo.InvariantCulture, $"{l.Layer},{s},{l.Loss[s]:G6}\n");
        return sb.ToString();
    }

    public JsonObject ToJsonObject()
    {
        var layers = new JsonArray();
        foreach (var l in Layers)
            layers.Add(new JsonObject
            {
                ["layer"] = l.Layer,
                ["tokens"] = l.Tokens,
                ["initial_error"] = l.InitialError,
                ["final_error"] = l.FinalError,
                ["steps"] = l.Loss.Count,
                ["seconds"] = l.Seconds,
            });
        return new JsonObject
        {
            ["operation"] = "substitute",
            ["model"] = Model,
            ["output"] = Output,
            ["export"] = Export == SubstituteExport.ReducedTopK ? "reduced-topk" : "compressed-experts",
            ["top_k"] = TopK,
            ["aux"] = Aux,
            ["device"] = Device,
            ["steps"] = Training?.Steps,
            ["learning_rate"] = Training?.LearningRate,
            ["batch_tokens"] = Training?.BatchTokens,
            ["calibration_sequences"] = CalibrationSequences,
            ["calibration_tokens"] = CalibrationTokens,
            ["active_parameters_before"] = ActiveParametersBefore,
            ["active_parameters_after"] = ActiveParametersAfter,
            ["total_parameters_before"] = TotalParametersBefore,
            ["total_parameters_after"] = TotalParametersAfter,
            ["layers"] = layers,
            ["elapsed_seconds"] = ElapsedSeconds,
        };
    }

    public string ToMarkdown()
    {
        var ci = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.Append("# Substitution\n\n");
        sb.Append(ci, $"- model: {Model}\n- output: {Output}\n");
        if (Export == SubstituteExport.ReducedTopK)
            sb.Append(ci, $"- export: reduced top-k (standard checkpoint): top-{TopK} → top-{TopK - Aux}\n");
        else
        {
            sb.Append(ci, $"- export: compressed experts — of top-{TopK}, {TopK - Aux} computed and {Aux} replaced by trained vectors ");
            sb.Append("(runs in moe-compress only: stock runtimes ignore `compressed_experts` and run the plain top-k model)\n");
            sb.Append(ci, $"- training: {Training!.Steps} Adam steps per MoE layer, lr {Training.LearningRate}, {Training.BatchTokens} tokens per step, device {Device}\n");
            sb.Append(ci, $"- calibration: {CalibrationSequences} sequences, {CalibrationTokens:N0} tokens\n");
        }
        var before = ActiveParametersBefore;
        sb.Append(ci, $"- active parameters per token: {before:N0} → {ActiveParametersAfter:N0} " +
                      $"({(before == 0 ? 0 : 100.0 * (before - ActiveParametersAfter) / before):F1}% fewer); total {TotalParametersBefore:N0} → {TotalParametersAfter:N0}\n");
        sb.Append(ci, $"- time: {ElapsedSeconds:F1} s\n");
        if (Layers.Count > 0)
        {
            sb.Append("\n| layer | tokens | block error, vectors of ones (top-k lowered) | block error, trained | steps | seconds |\n|---:|---:|---:|---:|---:|---:|\n");
            foreach (var l in Layers)
                sb.Append(ci, $"| {l.Layer} | {l.Tokens:N0} | {l.InitialError:G4} | {l.FinalError:G4} | {l.Loss.Count} | {l.Seconds:F1} |\n");
            sb.Append(ci, $"\nBlock error = ‖ŷ − y‖² / ‖y‖² of the routed output against the original block on the layer's calibration inputs; per-step curve in `{LossCsvFile}`.\n");
        }
        return sb.ToString();
    }
}
