using System.Globalization;
using System.Text.Json.Nodes;
using MoECompress.Formats.Safetensors;
using TorchSharp;

namespace MoECompress.Tests.Families;

/// <summary>Paths to the reference data under tests/data (found from this source file, so any build folder works).</summary>
internal static class FamilyTestData
{
    public static string ConfigsDir => Path.Combine(Infrastructure.RepoPaths.TestData, "configs");

    public static string ConfigPath(string relative) => Path.Combine(ConfigsDir, relative);

    public static JsonObject LoadConfig(string relative) =>
        (JsonObject)JsonNode.Parse(File.ReadAllText(ConfigPath(relative)))!;

    /// <summary>Tensor names of a model.safetensors.index.json weight_map, in file order.</summary>
    public static IReadOnlyList<string> IndexNames(string relative) =>
        ((JsonObject)JsonNode.Parse(File.ReadAllText(ConfigPath(relative)))!["weight_map"]!).Select(kv => kv.Key).ToList();

    /// <summary>The Qwen3.6 CSV (Tensor,Shape,Precision) as header entries; shapes are written "[248 320, 2 048]".</summary>
    public static IReadOnlyList<TensorInfo> Qwen36Csv()
    {
        var result = new List<TensorInfo>();
        foreach (var line in File.ReadLines(ConfigPath("Qwen3.6-35B-A3B/3.6.Tensor.Shapes.csv")).Skip(1))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            int comma = line.IndexOf(',');
            var name = line[..comma];
            var rest = line[(comma + 1)..];
            string shapeText, precision;
            if (rest.StartsWith('"'))
            {
                int close = rest.IndexOf('"', 1);
                shapeText = rest[1..close];
                precision = rest[(close + 2)..];
            }
            else
            {
                int c = rest.IndexOf(',');
                shapeText = rest[..c];
                precision = rest[(c + 1)..];
            }
            long[] shape = shapeText.Trim('[', ']').Length == 0 ? []
                : shapeText.Trim('[', ']').Split(',').Select(s => long.Parse(s.Replace(" ", ""), CultureInfo.InvariantCulture)).ToArray();
            var dtype = precision.Length == 0 ? SafetensorsDType.BF16 : SafetensorsDTypes.Parse(precision);
            result.Add(new TensorInfo(name, dtype, shape, 0, 0));
        }
        return result;
    }
}

/// <summary>An <see cref="ITensorSource"/> with header entries only (no data): enough for structure validation.</summary>
internal sealed class HeaderOnlyTensorSource(IEnumerable<TensorInfo> infos) : ITensorSource
{
    private readonly Dictionary<string, TensorInfo> _infos = infos.ToDictionary(i => i.Name);
    public IReadOnlyList<string> Names => _infos.Keys.ToList();
    public bool Contains(string name) => _infos.ContainsKey(name);
    public TensorInfo GetInfo(string name) => _infos[name];
    public ReadOnlySpan<byte> GetBytes(string name) => throw new NotSupportedException("header-only source");
    public torch.Tensor ToTensor(string name, torch.ScalarType? @as = null) => throw new NotSupportedException("header-only source");
}
