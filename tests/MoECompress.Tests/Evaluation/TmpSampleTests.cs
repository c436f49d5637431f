using MoECompress.Compression.Evaluation;
namespace MoECompress.Tests.Evaluation;
public class TmpSampleTests
{
    [Fact]
    public async Task Sample()
    {
        var root = Path.Combine(Path.GetTempPath(), "eval-sample");
        using var b = TinyEvalModel.Create(32000);
        using var m = b.Clone();
        m.Perturb("model.layers.0.self_attn.v_proj.weight", 0.3f);
        foreach (var (mm, name) in new[] { (b, "base"), (m, "model") })
        {
            mm.Save(Path.Combine(root, name));
            foreach (var f in new[] { "tokenizer.json", "tokenizer_config.json" })
                File.Copy(Path.Combine(Tokenization.TokenizerTestData.Mixtral, f), Path.Combine(root, name, f), true);
        }
        var lines = new List<string>();
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var r = await Evaluator.RunAsync(new EvaluateOptions { Model = Path.Combine(root, "model"), Base = Path.Combine(root, "base"), Data = "/work/main/calibration/heldout", MaxTokens = 20000, Context = 64 }, new P(lines));
        lines.Add($"elapsed {sw.ElapsedMilliseconds}");
        File.WriteAllText("/tmp/eval-sample.md", r.ToMarkdown());
        File.WriteAllText("/tmp/eval-sample.json", r.ToJson());
        File.WriteAllLines("/tmp/eval-sample.log", lines);
    }
    sealed class P(List<string> l) : IProgress<string> { public void Report(string v) { lock (l) l.Add($"{DateTime.Now:HH:mm:ss.fff} {v}"); } }
}
