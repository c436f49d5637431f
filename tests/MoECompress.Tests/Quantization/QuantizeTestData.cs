using System.Text.Json.Nodes;
using MoECompress.Compression.Calibration;
using MoECompress.Tests.Calibration;

namespace MoECompress.Tests.Quantization;

/// <summary>Shared inputs of the quantization and CLI compression tests: token-id data for the tiny models and small calibration settings.</summary>
internal static class QuantizeTestData
{
    private static readonly Lazy<string> Tokens = new(() =>
    {
        var path = TinyCalibrationModel.NewPath("quantize-data") + ".jsonl";
        var rng = new Random(23);
        File.WriteAllLines(path, Enumerable.Range(0, 12).Select(_ =>
            new JsonObject { ["input_ids"] = new JsonArray(Enumerable.Range(0, 48).Select(_ => (JsonNode?)rng.Next(3, 256)).ToArray()) }
                .ToJsonString()));
        return path;
    });

    /// <summary>A .jsonl of pre-tokenized documents (ids 3..255) for the tiny models.</summary>
    public static string TokenData => Tokens.Value;

    /// <summary>Calibration in memory on <see cref="TokenData"/>: 8 sequences of 24 tokens.</summary>
    public static ProfileRequest Profile => new() { Data = TokenData, Samples = 8, SeqLen = 24, MicroBatch = 64 };
}
