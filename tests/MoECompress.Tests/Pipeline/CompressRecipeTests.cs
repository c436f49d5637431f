using System.Text.Json.Nodes;
using MoECompress.Compression.Pipeline;
using MoECompress.Compression.Pruning;
using MoECompress.Compression.Quantization;
using MoECompress.Compression.Reporting;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;
using MoECompress.Formats.Safetensors;
using MoECompress.Tests.Calibration;
using MoECompress.Tests.Cli;
using MoECompress.Tests.Infrastructure;
using MoECompress.Tests.Quantization;

namespace MoECompress.Tests.Pipeline;

/// <summary>
/// `compress --recipe`: recipes are read strictly (errors name the step and key), checked against the model before any
/// work, run with one draw of calibration tokens and one calibration pass for prune → quantize, and give exactly what
/// the separate commands give.
/// </summary>
public sealed class CompressRecipeTests
{
    private static readonly CalibrationSettings TinyCalibration = new() { Data = QuantizeTestData.TokenData, Samples = 8, SeqLen = 24 };

    private static string RecipeFile(string text, string extension = ".yaml")
    {
        var path = TinyCalibrationModel.NewPath("recipe") + extension;
        File.WriteAllText(path, text);
        return path;
    }

    private static Dictionary<string, byte[]> Tensors(string dir)
    {
        using var c = SafetensorsCheckpoint.Open(dir);
        return c.Names.ToDictionary(n => n, n => c.GetBytes(n).ToArray());
    }

    private sealed class Log : IProgress<ProgressUpdate>
    {
        public List<ProgressUpdate> Updates { get; } = [];
        public Action<ProgressUpdate>? OnUpdate { get; init; }
        public void Report(ProgressUpdate value)
        {
            lock (Updates) Updates.Add(value);
            OnUpdate?.Invoke(value);
        }
    }

    [Fact]
    public async Task Prune_then_quantize_equals_the_two_commands_byte_for_byte_with_one_calibration_pass()
    {
        var recipe = CompressionRecipe.Load(RecipeFile("""
            steps:
              - prune: {method: reap, keep: 6}
              - quantize: {bits: 3, method: gptq, group_size: 32, candidates: [2, 3, 4]}
            """)) with { Calibration = TinyCalibration };
        var output = TinyCalibrationModel.NewPath("compress-out");
        var log = new Log();
        var report = await new CompressionPipeline { Model = TinyCalibrationModel.Mixtral, Output = output, Recipe = recipe }.RunAsync(log);

        Assert.Equal(1, report.CalibrationPasses);
        // The prune measures in its own sequential pass (compressed propagation); no other calibration pass runs.
        Assert.Single(log.Updates, u => u.Message.StartsWith("calibration pass", StringComparison.Ordinal) || u.Message.StartsWith("sequential prune", StringComparison.Ordinal));
        Assert.Single(log.Updates, u => u.Message.StartsWith("sequential prune", StringComparison.Ordinal));
        Assert.Contains(log.Updates, u => u.Message.Contains("router statistics of this model collected in the same pass", StringComparison.Ordinal));
        Assert.Equal([1, 2, 3], log.Updates.Where(u => u.Step is not null).Select(u => u.Step!.Value));

        // The same two steps as separate commands (each calibrating on the same data).
        var request = new Compression.Calibration.ProfileRequest { Data = TinyCalibration.Data, Samples = TinyCalibration.Samples, SeqLen = TinyCalibration.SeqLen };
        var pruned = Pruner.Run(new PruneOptions { Model = TinyCalibrationModel.Mixtral, Output = TinyCalibrationModel.NewPath("sep-pruned"), Keep = 6, Profile = request });
        var quantized = Quantizer.Run(new QuantizeOptions
        {
            Model = pruned.Output!, Output = TinyCalibrationModel.NewPath("sep-quantized"), Bits = 3, GroupSize = 32, Profile = request,
        });
        var a = Tensors(output);
        var b = Tensors(quantized.Output!);
        Assert.Equal(b.Keys.Order(), a.Keys.Order());
        foreach (var (name, bytes) in b) Assert.True(bytes.AsSpan().SequenceEqual(a[name]), $"tensor {name} differs from the separate commands");

        using var result = ModelCheckpoint.Open(output);
        Assert.Equal(6, result.MoE.NumExperts);
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(output, CompressionPipeline.ReportJson)))!;
        Assert.Equal(1, (int)json["calibration_passes"]!);
        Assert.Equal(["prune", "quantize"], json["steps"]!.AsArray().Select(s => (string)s!["step"]!));
        Assert.True(File.Exists(Path.Combine(output, HtmlReport.FileName)));
        Assert.Empty(Directory.GetDirectories(Path.GetDirectoryName(output)!, $".{Path.GetFileName(output)}.compress-*"));
    }

    [Theory]
    [InlineData("mixtral-prune-gptq3.yaml", "mixtral", 6, "gptq")]
    [InlineData("deepseek-prune-gptq4.yaml", "deepseek-v3", 12, "compressed-tensors")]
    [InlineData("vllm-merge-gptq4.yaml", "mixtral", 6, "gptq")]
    public async Task The_shipped_recipes_run_on_fixtures(string file, string model, int experts, string quantMethod)
    {
        var recipe = CompressionRecipe.Load(Path.Combine(RepoPaths.Root, "recipes", file)) with { Calibration = TinyCalibration, Evaluate = null };
        var steps = recipe.Steps.Select(s => s is QuantizeStep q ? q with { GroupSize = 32 } : s).ToList();
        var output = TinyCalibrationModel.NewPath("recipe-" + model);
        var input = model == "mixtral" ? TinyCalibrationModel.Mixtral : TinyCalibrationModel.DeepSeekV3;
        var report = await new CompressionPipeline { Model = input, Output = output, Recipe = recipe with { Steps = steps } }.RunAsync();
        Assert.Equal(1, report.CalibrationPasses);
        using var result = ModelCheckpoint.Open(output);
        Assert.Equal(experts, result.MoE.NumExperts);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(output, "config.json")))!;
        Assert.Equal(quantMethod, (string?)config["quantization_config"]?["quant_method"]);
    }

    [Theory]
    [InlineData("steps:\n  - prune: {ratio: 0.25, metod: reap}\n", "steps[0] (prune): unknown key 'metod'")]
    [InlineData("steps:\n  - quantize: {bits: 3}\n  - merge: {ratio: 0.25}\n", "steps[1] (merge): cannot follow quantize (steps[0])")]
    [InlineData("steps:\n  - distill: {}\n", "steps[0]: unknown step 'distill'")]
    [InlineData("steps:\n  - quantize: {bits: three}\n", "steps[0] (quantize).bits: expected a number, found text 'three'")]
    [InlineData("steps:\n  - quantize: {bits: 3, format: gptqq}\n", "steps[0] (quantize).format: 'gptqq' is not one of gptq, compressed-tensors, dequantized")]
    [InlineData("calibration: {samples: 8, samples: 9}\nsteps: []\n", "Duplicate key samples")]
    [InlineData("steps: []\n", "give at least one step")]
    [InlineData("calibration: {seq_len: 0}\nsteps:\n  - prune: {ratio: 0.25}\n", "calibration.seq_len: 0 must be a whole number ≥ 1")]
    [InlineData("steps:\n  - prune: {ratio: 0.25\n", "not valid YAML at line")]
    [InlineData("stepz: []\n", "unknown key 'stepz'")]
    public void A_bad_recipe_is_refused_naming_the_step_and_key(string text, string expected)
    {
        var path = RecipeFile(text);
        var ex = Assert.Throws<MoeCompressException>(() => CompressionRecipe.Load(path));
        Assert.Equal(ErrorKind.Usage, ex.Kind);
        Assert.Contains(path, ex.Message);
        Assert.Contains(expected, ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    [Fact]
    public void A_json_recipe_reads_like_yaml()
    {
        var yaml = CompressionRecipe.Load(RecipeFile("steps:\n  - prune: {ratio: 0.25, method: frequency}\n  - quantize: {bits: 4, uniform: true, format: compressed-tensors}\n"));
        var json = CompressionRecipe.Load(RecipeFile("""{"steps": [{"prune": {"ratio": 0.25, "method": "frequency"}}, {"quantize": {"bits": 4, "uniform": true, "format": "compressed-tensors"}}]}""", ".json"));
        Assert.Equal(yaml.Steps.Count, json.Steps.Count);
        Assert.Equal(yaml.Steps[0], json.Steps[0]);
        var (qy, qj) = ((QuantizeStep)yaml.Steps[1], (QuantizeStep)json.Steps[1]);
        Assert.Equal((qy.Bits, qy.Uniform, qy.Format), (qj.Bits, qj.Uniform, qj.Format));
        Assert.Equal(Formats.Quantized.QuantizedFormat.CompressedTensors, qj.Format);
    }

    [Fact]
    public void An_expert_count_the_model_cannot_load_is_refused_from_the_config_before_any_work()
    {
        // Tiny Mixtral: 8 experts, top-2. Keeping 6 then merging to 1 leaves fewer experts than top-k.
        var recipe = new CompressionRecipe
        {
            Calibration = TinyCalibration,
            Steps = [new PruneStep { Keep = 6 }, new MergeStep { Keep = 1 }],
        };
        var output = TinyCalibrationModel.NewPath("compress-refused");
        var pipeline = new CompressionPipeline { Model = TinyCalibrationModel.Mixtral, Output = output, Recipe = recipe };
        var ex = Assert.Throws<MoeCompressException>(() => pipeline.Plan());
        Assert.Contains("recipe steps[1] (merge): keep", ex.Message);
        Assert.ThrowsAsync<MoeCompressException>(() => pipeline.RunAsync()).Wait();
        Assert.False(Directory.Exists(output));
        var plan = (WithRecipe(recipe with { Steps = [new PruneStep { Keep = 6 }, new MergeStep { Keep = 4 }, new QuantizeStep { Bits = 3 }] })).Plan();
        Assert.Equal([8, 6, 4], plan.Steps.Select(s => s.ExpertsBefore));
        Assert.Equal(2, plan.CalibrationPasses);
    }

    [Fact]
    public void A_packed_format_for_fused_experts_is_refused_before_any_work()
    {
        var fused = TinyCalibrationModel.Write("qwen3-moe-fused", TinyCalibrationModel.NewPath("fused"), 3, (_, _) => { });
        var recipe = new CompressionRecipe { Steps = [new PruneStep { Ratio = 0.25 }, new QuantizeStep { Bits = 4, Uniform = true }] };
        var output = TinyCalibrationModel.NewPath("compress-fused");
        var ex = Assert.Throws<MoeCompressException>(() => new CompressionPipeline { Model = fused, Output = output, Recipe = recipe }.Plan());
        Assert.Contains("recipe steps[1] (quantize):", ex.Message);
        Assert.Contains("stored fused", ex.Message);
        Assert.Contains("format dequantized", ex.Message);
        Assert.False(Directory.Exists(output));
    }

    private static CompressionPipeline WithRecipe(CompressionRecipe recipe) =>
        new() { Model = TinyCalibrationModel.Mixtral, Recipe = recipe };

    [Fact]
    public async Task A_cancelled_run_leaves_neither_output_nor_work_folder()
    {
        var recipe = new CompressionRecipe { Calibration = TinyCalibration, Steps = [new PruneStep { Keep = 6 }, new QuantizeStep { Bits = 3, GroupSize = 32 }] };
        var output = TinyCalibrationModel.NewPath("compress-cancelled");
        using var cts = new CancellationTokenSource();
        var log = new Log { OnUpdate = u => { if (u.Stage == "quantize" && u.Step is not null) cts.Cancel(); } };
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
            new CompressionPipeline { Model = TinyCalibrationModel.Mixtral, Output = output, Recipe = recipe }.RunAsync(log, cts.Token));
        Assert.False(Directory.Exists(output));
        Assert.Empty(Directory.GetDirectories(Path.GetDirectoryName(output)!, $".{Path.GetFileName(output)}.compress-*"));
    }

    [Fact]
    public void The_cli_dry_run_prints_the_plan_and_writes_nothing()
    {
        var recipe = Path.Combine(RepoPaths.Root, "recipes", "mixtral-prune-gptq3.yaml");
        var output = TinyCalibrationModel.NewPath("compress-dry");
        var r = CliRunner.Run("compress", TinyCalibrationModel.Mixtral, output, "--recipe", recipe, "--dry-run");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("reap, 8 → 6 experts per layer", r.Stdout);
        Assert.Contains("1 calibration pass(es)", r.Stdout);
        Assert.False(Directory.Exists(output));
        var bad = CliRunner.Run("compress", TinyCalibrationModel.Mixtral, output, "--recipe", RecipeFile("steps:\n  - prune: {ratio: 2}\n"));
        Assert.Equal((int)ErrorKind.Usage, bad.ExitCode);
        Assert.Contains("steps[0] (prune): ratio 2: must be between 0 and 1", bad.Stderr);
        Assert.False(Directory.Exists(output));
    }
}
