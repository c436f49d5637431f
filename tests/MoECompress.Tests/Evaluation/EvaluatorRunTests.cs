using MoECompress.Tests.Infrastructure;
using System.Text.Json.Nodes;
using MoECompress.Compression.Data;
using MoECompress.Compression.Evaluation;
using MoECompress.Compression.Tokenization;
using MoECompress.Formats.Errors;
using MoECompress.Tests.Tokenization;

namespace MoECompress.Tests.Evaluation;

/// <summary>
/// <see cref="Evaluator.RunAsync"/> end to end: tiny models saved as model folders with the Mixtral tokenizer
/// (32,000 ids), a text file, JSON and Markdown reports.
/// </summary>
public sealed class EvaluatorRunTests : IDisposable
{
    private const int Vocab = 32000;
    private readonly string _root = Path.Combine(Path.GetTempPath(), $"moe-eval-test-{Guid.NewGuid():N}");

    private const string Text =
        "The quick brown fox jumps over the lazy dog. A mixture of experts routes each token to a few experts, " +
        "so only part of the network runs for any one token. Perplexity measures how surprised a model is by text.";

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    private string SaveModel(TinyEvalModel model, string name)
    {
        var dir = Path.Combine(_root, name);
        model.Save(dir);
        foreach (var file in new[] { "tokenizer.json", "tokenizer_config.json" })
            File.Copy(Path.Combine(TokenizerTestData.Mixtral, file), Path.Combine(dir, file));
        return dir;
    }

    private string SaveText()
    {
        Directory.CreateDirectory(_root);
        var path = Path.Combine(_root, "heldout.txt");
        File.WriteAllText(path, Text);
        return path;
    }

    [Fact]
    public async Task ReportsPerplexityAndComparisonWithTheBase()
    {
        using var baseModel = TinyEvalModel.Create(Vocab);
        using var model = baseModel.Clone();
        model.Perturb("model.layers.0.self_attn.v_proj.weight", 0.3f);
        var baseDir = SaveModel(baseModel, "base");
        var modelDir = SaveModel(model, "model");
        var data = SaveText();
        var lines = new List<string>();

        var report = await Evaluator.RunAsync(new EvaluateOptions
        {
            Model = modelDir,
            Base = baseDir,
            Data = data,
            Context = 16,
            MaxTokens = 40,
        }, new SyncProgress(lines));

        // The same tokens, evaluated directly on the in-memory engines, give the same figures.
        using var tokenizer = TokenizerLoader.Load(modelDir);
        var tokens = EvaluationText.Load(data, tokenizer).Tokens;
        Assert.Equal(1, tokens[0]); // BOS
        var expected = Evaluator.Measure(model.Engine(), baseModel.Engine(), tokens[..40], new EvaluationSettings(16, 8));

        var m = report.Metrics;
        Assert.Equal(16, m.Context);
        Assert.Equal(8, m.Stride);                // default: context / 2
        Assert.Equal(40, m.StreamTokens);
        Assert.Equal(39, m.TokensScored);
        Assert.Equal(expected.Windows, m.Windows);
        Tolerance.Close(expected.MeanNll, m.MeanNll, Tolerance.Float32Sum, 1e-7);
        Tolerance.Close(expected.MeanKl!.Value, m.MeanKl!.Value, Tolerance.Float32Sum, 1e-7);
        Assert.Equal(expected.Top1Agreement, m.Top1Agreement);
        Assert.True(m.MeanKl > 0);
        Assert.Equal(TinyEvalModel.Layers, m.LayerErrors.Count);
        Assert.True(m.LayerErrors[0].RelativeError > 0);
        Assert.Equal(tokens.Length, report.TextTokens);
        Assert.True(report.BosPrepended);
        Assert.Equal(Path.GetFullPath(modelDir), report.Model.Path);
        Assert.Equal("mixtral", report.Model.Family);
        Assert.Equal(Path.GetFullPath(baseDir), report.Base!.Path);
        Assert.Equal(new[] { Path.GetFullPath(data) }, report.DataFiles);
        Assert.Equal(Evaluator.ToolVersion, report.ToolVersion);
        Assert.Contains(lines, l => l.StartsWith("layer 2/2"));

        var json = JsonNode.Parse(report.ToJson())!.AsObject();
        Assert.Equal(Evaluator.ToolVersion, (string)json["tool_version"]!);
        Assert.Equal(Path.GetFullPath(modelDir), (string)json["model"]!["path"]!);
        Assert.Equal(Path.GetFullPath(baseDir), (string)json["base"]!["path"]!);
        Assert.Equal(Path.GetFullPath(data), (string)json["data"]!["path"]!);
        Assert.Equal(16, (int)json["settings"]!["context"]!);
        Assert.Equal(8, (int)json["settings"]!["stride"]!);
        Assert.Equal(40, (int)json["settings"]!["max_tokens"]!);
        Assert.Equal(39, (long)json["results"]!["tokens_scored"]!);
        Tolerance.Close(m.Perplexity, (double)json["results"]!["perplexity"]!, Tolerance.Double);
        Assert.Equal(m.MeanKl!.Value, (double)json["results"]!["mean_kl"]!, 12);
        Assert.Equal(2, json["layer_errors"]!["layers"]!.AsArray().Count);
        Assert.Contains("‖H_base‖_F", (string)json["layer_errors"]!["definition"]!);

        var md = report.ToMarkdown();
        Assert.Contains("| perplexity |", md);
        Assert.Contains("top-1 agreement", md);
        Assert.Contains(modelDir, md);
        Assert.Contains("context 16, stride 8", md);
        Assert.Contains("| 1 |", md); // per-layer table row
    }

    [Fact]
    public async Task WithoutBaseReportsOnlyPerplexity()
    {
        using var model = TinyEvalModel.Create(Vocab);
        var modelDir = SaveModel(model, "model");

        var report = await Evaluator.RunAsync(new EvaluateOptions { Model = modelDir, Data = SaveText(), Context = 12, Stride = 12 });

        Assert.Null(report.Base);
        Assert.Null(report.Metrics.MeanKl);
        Assert.True(report.Metrics.Perplexity > 1 && double.IsFinite(report.Metrics.Perplexity));
        var json = JsonNode.Parse(report.ToJson())!.AsObject();
        Assert.Null(json["base"]);
        Assert.Null(json["layer_errors"]);
        Assert.DoesNotContain("top-1", report.ToMarkdown());
    }

    [Fact]
    public async Task BaseWithAnotherVocabularyIsAClearError()
    {
        using var model = TinyEvalModel.Create(Vocab);
        using var other = TinyEvalModel.Create(Vocab + 64);
        var modelDir = SaveModel(model, "model");
        var otherDir = SaveModel(other, "other");

        var ex = await Assert.ThrowsAsync<MoeCompressException>(() =>
            Evaluator.RunAsync(new EvaluateOptions { Model = modelDir, Base = otherDir, Data = SaveText(), Context = 8 }));

        Assert.Equal(ErrorKind.Usage, ex.Kind);
        Assert.Contains("vocab_size 32064", ex.Message);
        Assert.Contains(otherDir, ex.Message);
    }

    [Fact]
    public async Task ContextBeyondTheModelsPositionsIsRejected()
    {
        using var model = TinyEvalModel.Create(Vocab);
        var modelDir = SaveModel(model, "model");

        var ex = await Assert.ThrowsAsync<MoeCompressException>(() =>
            Evaluator.RunAsync(new EvaluateOptions { Model = modelDir, Data = SaveText(), Context = 65 }));

        Assert.Equal(ErrorKind.Usage, ex.Kind);
        Assert.Contains("--context 65", ex.Message);
    }

    [Fact]
    public async Task MissingModelFolderIsNamed()
    {
        var missing = Path.Combine(_root, "no-such-model");

        var ex = await Assert.ThrowsAsync<MoeCompressException>(() =>
            Evaluator.RunAsync(new EvaluateOptions { Model = missing, Data = SaveText() }));

        Assert.Equal(ErrorKind.Usage, ex.Kind);
        Assert.Contains(missing, ex.Message);
    }

    /// <summary>Collects progress lines synchronously (Progress&lt;T&gt; would post them later).</summary>
    private sealed class SyncProgress(List<string> lines) : IProgress<string>
    {
        public void Report(string value)
        {
            lock (lines) lines.Add(value);
        }
    }
}
