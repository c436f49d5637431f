using System.Text.Json.Nodes;
using MoECompress.Formats.Safetensors;
using MoECompress.Tests.Calibration;
using MoECompress.Tests.Cli;
using MoECompress.Tests.Quantization;

namespace MoECompress.Tests.Reliability;

/// <summary>
/// The same input, options and seed give byte-identical output files. Each command runs twice into the same
/// destination path (the first result is moved aside), and every file of the two outputs is compared byte for byte:
/// shards, config.json, index, profile.safetensors. JSON files that record when and how long (the manifest, the
/// reports, profile.json) are compared without their documented clock fields — <c>created_utc</c> (the time of
/// writing), <c>elapsed_seconds</c> and the report's <c>seconds</c> (wall-clock durations) — and must otherwise be
/// identical (the manifest's hash of such a file is left out too); the Markdown report
/// (a rendering of the JSON one, with durations) is not compared.
/// </summary>
[Collection(nameof(LibtorchThreadCount))]
public sealed class DeterminismTests
{
    private static string[] Calibration => ["--data", QuantizeTestData.TokenData, "--samples", "4", "--seq-len", "32", "--seed", "3"];

    [Fact]
    public void PruneIsDeterministic() =>
        AssertTwoRunsIdentical("det-prune", o => ["prune", TinyCalibrationModel.Mixtral, o, "--keep", "6", "--method", "reap", .. Calibration]);

    [Fact]
    public void MergeIsDeterministic() =>
        AssertTwoRunsIdentical("det-merge", o => ["merge", TinyCalibrationModel.Mixtral, o, "--ratio", "0.5", "--method", "average", .. Calibration]);

    [Fact]
    public void QuantizeIsDeterministic() =>
        AssertTwoRunsIdentical("det-quantize", o => ["quantize", TinyCalibrationModel.Mixtral, o, "--bits", "4", "--uniform", "--method", "rtn", "--group-size", "32", "--format", "gptq", .. Calibration]);

    [Fact]
    public void CalibrateIsDeterministic() =>
        AssertTwoRunsIdentical("det-calibrate", o => ["calibrate", TinyCalibrationModel.Mixtral, "--out", o, .. Calibration]);

    private static void AssertTwoRunsIdentical(string name, Func<string, string[]> args)
    {
        var output = TinyCalibrationModel.NewPath(name);
        var first = output + "-first";
        var r1 = CliRunner.Run(args(output));
        Assert.True(r1.ExitCode == 0, r1.Stderr);
        Directory.Move(output, first);
        var r2 = CliRunner.Run(args(output));
        Assert.True(r2.ExitCode == 0, r2.Stderr);

        var files1 = Files(first);
        var files2 = Files(output);
        Assert.Equal(files1, files2);
        Assert.Contains(files1, f => f.EndsWith(".safetensors", StringComparison.Ordinal));
        // JSON files that differ only in clock fields: the manifest's hash and size of them differ too, legitimately.
        var clockOnly = files1.Where(f => f.EndsWith(".json", StringComparison.Ordinal) &&
                                          !File.ReadAllBytes(Path.Combine(first, f)).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(output, f))) &&
                                          Difference(Path.Combine(first, f), Path.Combine(output, f), new HashSet<string>()) is null).ToHashSet();
        var different = files1.Select(f => Difference(Path.Combine(first, f), Path.Combine(output, f), clockOnly) is { } d ? $"{f} ({d})" : null)
            .OfType<string>().ToList();
        Assert.True(different.Count == 0, $"{name}: files differ between two identical runs: {string.Join(", ", different)}");
    }

    private static string[] Files(string dir) =>
        Directory.GetFiles(dir, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(dir, f)).Order(StringComparer.Ordinal).ToArray();

    /// <summary>Keys that hold the clock: when a file was written, how long a step took.</summary>
    private static readonly string[] ClockFields = ["created_utc", "elapsed_seconds", "seconds"];

    /// <summary>Null when the files agree, else where they first differ.</summary>
    private static string? Difference(string a, string b, IReadOnlySet<string> clockOnly)
    {
        if (a.EndsWith(".md", StringComparison.Ordinal)) return null;
        if (!a.EndsWith(".json", StringComparison.Ordinal) || Path.GetFileName(a) == "config.json")
            return File.ReadAllBytes(a).AsSpan().SequenceEqual(File.ReadAllBytes(b)) ? null : "bytes differ";
        return FirstDifference(WithoutClock(JsonNode.Parse(File.ReadAllBytes(a)), clockOnly),
            WithoutClock(JsonNode.Parse(File.ReadAllBytes(b)), clockOnly), "$");
    }

    private static string? FirstDifference(JsonNode? a, JsonNode? b, string path)
    {
        if (a is JsonObject oa && b is JsonObject ob)
        {
            foreach (var key in oa.Select(p => p.Key).Union(ob.Select(p => p.Key)))
                if (FirstDifference(oa[key], ob[key], $"{path}.{key}") is { } d) return d;
            return null;
        }
        if (a is JsonArray aa && b is JsonArray ab && aa.Count == ab.Count)
        {
            for (int i = 0; i < aa.Count; i++)
                if (FirstDifference(aa[i], ab[i], $"{path}[{i}]") is { } d) return d;
            return null;
        }
        string ta = a?.ToJsonString() ?? "null", tb = b?.ToJsonString() ?? "null";
        return ta == tb ? null : $"{path}: {Short(ta)} vs {Short(tb)}";
    }

    private static string Short(string s) => s.Length <= 80 ? s : s[..80] + "…";

    /// <summary>Removes the clock fields, and the hash and size of manifest entries for files in <paramref name="clockOnly"/>.</summary>
    private static JsonNode? WithoutClock(JsonNode? node, IReadOnlySet<string> clockOnly)
    {
        switch (node)
        {
            case JsonObject o:
                foreach (var key in ClockFields) o.Remove(key);
                if (o["file"] is JsonValue file && file.TryGetValue<string>(out var name) && clockOnly.Contains(name))
                {
                    o.Remove("sha256");
                    o.Remove("bytes");
                }
                foreach (var (_, child) in o) WithoutClock(child, clockOnly);
                break;
            case JsonArray arr:
                foreach (var child in arr) WithoutClock(child, clockOnly);
                break;
        }
        return node;
    }
}
