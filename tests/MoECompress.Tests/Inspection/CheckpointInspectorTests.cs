using System.Text.Json.Nodes;
using MoECompress.Formats.Families;
using MoECompress.Formats.Inspection;
using MoECompress.Formats.Synthetic;
using MoECompress.Tests.Families;

namespace MoECompress.Tests.Inspection;

public class CheckpointInspectorTests
{
    [Fact]
    public void MixtralCountsMatchHandComputedValues()
    {
        using var dir = new TempDirectory();
        SyntheticCheckpoint.Write("mixtral", dir.Path);
        var r = CheckpointInspector.Inspect(dir.Path);

        // hidden 64, 4 heads × 16, 2 KV heads, expert intermediate 32, 8 experts top-2, 4 layers, vocabulary 256.
        const long attention = 64 * 64 + 32 * 64 + 32 * 64 + 64 * 64;   // q, k, v, o = 12,288
        const long expert = 32 * 64 + 64 * 32 + 32 * 64;                // w1, w2, w3 = 6,144
        const long router = 8 * 64;                                     // 512
        const long norms = 2 * 64;                                      // 128
        const long layer = attention + 8 * expert + router + norms;     // 62,080
        const long outside = 256 * 64 + 256 * 64 + 64;                  // embed, lm_head, final norm = 32,832
        Assert.Equal(281_152, r.TotalParameters);                        // 4 × layer + outside
        Assert.Equal(4 * layer + outside, r.TotalParameters);
        Assert.Equal(4 * (attention + 2 * expert + router + norms) + outside, r.ActiveParameters); // 133,696
        Assert.Equal(133_696, r.ActiveParameters);
        Assert.Equal(4 * 8 * expert, r.RoutedExpertParameters);
        Assert.Equal(expert, r.ParametersPerExpert);
        Assert.Equal(2 * r.TotalParameters, r.TotalBytes);
        Assert.Equal(1 + 4 * (4 + 1 + 8 * 3 + 2) + 1 + 1, r.TensorCount);   // 127
        Assert.Equal(new[] { "BF16" }, r.DTypes.Keys);
        Assert.Equal(new DTypeStatistics(127, r.TotalBytes), r.DTypes["BF16"]);
        Assert.Equal(2 * 4 * attention, r.Bytes.Attention);
        Assert.Equal(2 * 4 * 8 * expert, r.Bytes.RoutedExperts);
        Assert.Equal(2 * 4 * router, r.Bytes.Router);
        Assert.Equal(2 * (4 * norms + 64), r.Bytes.Norms);
        Assert.Equal(2 * 2 * 256 * 64, r.Bytes.Embeddings);
        Assert.Equal(0, r.Bytes.SharedExperts + r.Bytes.DenseMlp + r.Bytes.Other);
        Assert.Equal(r.TotalBytes, r.Bytes.Total);

        Assert.Equal("mixtral", r.Family);
        Assert.Equal(4, r.NumLayers);
        Assert.Equal(4, r.MoELayers);
        Assert.Equal(0, r.DenseLayers);
        Assert.Equal(8, r.ExpertsPerLayer);
        Assert.Equal(2, r.TopK);
        Assert.Equal(0, r.SharedExperts);
        Assert.Empty(r.MtpLayersPresent);
        Assert.All(r.Layers, l => Assert.Equal(("moe", 8, layer), (l.Kind, l.Experts, l.Parameters)));
        Assert.True(r.ShardCount > 1);
    }

    [Fact]
    public void DeepSeekV3CountsMatchHandComputedValues()
    {
        using var dir = new TempDirectory();
        SyntheticCheckpoint.Write("deepseek-v3", dir.Path);
        var r = CheckpointInspector.Inspect(dir.Path);

        // hidden 64, 4 heads; MLA: q_lora 32, kv_lora 16, nope 8, rope 8, v 8. 16 experts (4 groups, top-2 groups), top-4,
        // expert intermediate 32, 1 shared expert (32), dense intermediate 64; layer 0 dense, 1-3 MoE, MTP layer 4.
        const long mla = 32 * 64 + 4 * 16 * 32 + 24 * 64 + 4 * 16 * 16 + 64 * 4 * 8;  // q_a, q_b, kv_a, kv_b, o = 8,704
        const long mlaNorms = 32 + 16;
        const long layerNorms = 2 * 64;
        const long expert = 3 * 32 * 64;                                             // 6,144
        const long moeLayer = mla + mlaNorms + layerNorms + 16 * 64 + 16 + 16 * expert + expert;  // + router, correction bias, shared
        const long denseLayer = mla + mlaNorms + layerNorms + 3 * 64 * 64;
        const long mtpExtras = 256 * 64 + 64 + 64 + 64 * 128 + 64 + 256 * 64;           // embed, enorm, hnorm, eh_proj, head norm, head
        const long outside = 256 * 64 + 64 + 256 * 64;
        Assert.Equal(denseLayer + 3 * moeLayer + moeLayer + mtpExtras + outside, r.TotalParameters);   // 552,624
        Assert.Equal(moeLayer + mtpExtras, r.MtpParameters);
        Assert.Equal(denseLayer + 3 * (moeLayer - 16 * expert + 4 * expert) + outside, r.ActiveParameters); // 175,920
        Assert.Equal(4 * 16 * expert, r.RoutedExpertParameters);
        Assert.Equal(expert, r.ParametersPerExpert);
        // Everything BF16 except the four F32 correction biases.
        Assert.Equal(new DTypeStatistics(4, 4 * 16 * 4), r.DTypes["F32"]);
        Assert.Equal(2 * (r.TotalParameters - 4 * 16) + 4 * 16 * 4, r.TotalBytes);
        Assert.Equal(2 * 4 * expert, r.Bytes.SharedExperts);
        Assert.Equal(2 * 3 * 64 * 64, r.Bytes.DenseMlp);
        Assert.Equal(4 * (2 * 16 * 64 + 4 * 16), r.Bytes.Router);
        Assert.Equal(2 * 64 * 128, r.Bytes.Other);   // eh_proj

        Assert.Equal("deepseek-v3", r.Family);
        Assert.Equal((4, 3, 1), (r.NumLayers, r.MoELayers, r.DenseLayers));
        Assert.Equal((16, 4, 4, 2), (r.ExpertsPerLayer, r.TopK, r.Groups, r.TopKGroups));
        Assert.Equal("sigmoid", r.Scoring);
        Assert.Equal(2.5, r.RoutedScalingFactor);
        Assert.True(r.CorrectionBias);
        Assert.Equal((1, 32), (r.SharedExperts, r.SharedExpertIntermediateSize));
        Assert.Equal(1, r.MtpLayers);
        Assert.Equal(new[] { 4 }, r.MtpLayersPresent);
        Assert.Equal(new[] { "dense", "moe", "moe", "moe", "moe" }, r.Layers.Select(l => l.Kind));
        Assert.Equal(new[] { false, false, false, false, true }, r.Layers.Select(l => l.Mtp));
        Assert.Equal(denseLayer, r.Layers[0].Parameters);
        Assert.Equal(moeLayer - 12 * expert, r.Layers[1].ActiveParameters);
    }

    [Fact]
    public void GptOssCountsLogicalMxfp4Parameters()
    {
        using var dir = new TempDirectory();
        SyntheticCheckpoint.Write("gpt-oss", dir.Path);
        var r = CheckpointInspector.Inspect(dir.Path);
        // 8 experts, hidden 64, intermediate 64: gate_up 2I×H and down H×I values, biases 2I and H per expert.
        const long perExpert = 128 * 64 + 64 * 64 + 128 + 64;
        Assert.Equal(perExpert, r.ParametersPerExpert);
        Assert.Equal(4 * 8 * perExpert, r.Parameters.RoutedExperts);
        // Bytes: blocks half a byte per value, one scale byte per 32 values, BF16 biases.
        Assert.Equal(4 * 8 * ((128 * 64 + 64 * 64) / 2 + (128 * 64 + 64 * 64) / 32 + 2 * (128 + 64)), r.Bytes.RoutedExperts);
        Assert.True(r.Mxfp4Experts);
        Assert.True(r.RouterBias);
        Assert.Equal(4 * 8 * (64 / 32 * 16 * 128 + 64 / 32 * 16 * 64 + 128 * 2 + 64 * 2) + 0L, r.DTypes["U8"].Bytes);
        Assert.Equal(r.TotalParameters - 4 * (8 - 2) * perExpert, r.ActiveParameters);   // top-2 of 8 in each of 4 layers
    }

    [Fact]
    public void VisionTowerAndMtpAreNotActive()
    {
        using var dir = new TempDirectory();
        SyntheticCheckpoint.Write("qwen3.6-moe", dir.Path);
        var r = CheckpointInspector.Inspect(dir.Path);
        using var ckpt = ModelCheckpoint.Open(dir.Path);
        long vision = ckpt.Tensors.Names.Where(n => n.StartsWith("model.visual.", StringComparison.Ordinal)).Sum(n => ckpt.Tensors.GetInfo(n).ElementCount);
        Assert.True(vision > 0);
        Assert.True(r.MtpParameters > 0);
        long routedMain = r.Layers.Where(l => !l.Mtp).Sum(l => l.Parameters - l.ActiveParameters);
        Assert.Equal(r.TotalParameters - vision - r.MtpParameters - routedMain, r.ActiveParameters);
        Assert.Equal(new[] { 4 }, r.MtpLayersPresent);
        Assert.True(r.FusedExperts);
        Assert.Equal(r.TotalBytes, r.Bytes.Total);
        Assert.True(r.Bytes.Other >= 2 * vision);
    }

    [Fact]
    public void JsonUsesStableCamelCaseNames()
    {
        using var dir = new TempDirectory();
        SyntheticCheckpoint.Write("qwen2-moe", dir.Path);
        var r = CheckpointInspector.Inspect(dir.Path);
        var json = (JsonObject)JsonNode.Parse(r.ToJson())!;
        Assert.Equal("qwen2-moe", (string?)json["family"]);
        Assert.Equal(r.TotalParameters, (long)json["totalParameters"]!);
        Assert.Equal(r.ActiveParameters, (long)json["activeParameters"]!);
        Assert.Equal(r.SharedExpertIntermediateSize, (int)json["sharedExpertIntermediateSize"]!);
        Assert.Equal(r.Bytes.SharedExperts, (long)json["bytes"]!["sharedExperts"]!);
        Assert.Equal(r.DTypes["BF16"].Bytes, (long)json["dtypes"]!["BF16"]!["bytes"]!);
        Assert.Equal("moe", (string?)json["layers"]![0]!["kind"]);
        Assert.Equal(
            ["directory", "family", "architecture", "hiddenSize", "vocabSize", "numLayers", "moeLayers", "denseLayers", "layers",
             "expertsPerLayer", "topK", "expertIntermediateSize", "denseIntermediateSize", "groups", "topKGroups", "scoring",
             "normTopKProb", "routedScalingFactor", "routerBias", "correctionBias", "sharedExperts", "sharedExpertIntermediateSize",
             "sharedExpertGate", "mtpLayers", "mtpLayersPresent", "fusedExperts", "mxfp4Experts", "tieWordEmbeddings", "tensorCount",
             "shardCount", "totalBytes", "dtypes", "totalParameters", "activeParameters", "routedExpertParameters",
             "parametersPerExpert", "mtpParameters", "bytes", "parameters"],
            json.Select(kv => kv.Key).ToArray());
    }

    [Fact]
    public void TextSummarisesTheStructure()
    {
        using var dir = new TempDirectory();
        SyntheticCheckpoint.Write("deepseek-v3", dir.Path);
        var text = CheckpointInspector.Inspect(dir.Path).ToText();
        Assert.Contains("family       deepseek-v3 (DeepseekV3ForCausalLM)", text);
        Assert.Contains("layers       4: 3 MoE, 1 dense (intermediate 64); 0 dense, 1-3 moe, 4 mtp-moe", text);
        Assert.Contains("experts      16 routed per MoE layer, top-4, intermediate 32, sigmoid, renormalised, scaled ×2.5, per expert", text);
        Assert.Contains("groups       4 groups, top-2 groups per token", text);
        Assert.Contains("shared       1 expert(s), intermediate 32", text);
        Assert.Contains("mtp          1 declared, 1 stored (layer 4)", text);
        Assert.Contains("parameters   553K total, 176K active per token (31.8%), 6.14K per expert", text);
        Assert.Contains("routed experts", text);
    }

    [Fact]
    public void SizesAndCountsAreFormatted()
    {
        Assert.Equal("512 B", InspectionReport.Size(512));
        Assert.Equal("1.50 KiB", InspectionReport.Size(1536));
        Assert.Equal("87.0 GiB", InspectionReport.Size(93405585408));
        Assert.Equal("46.7B", InspectionReport.Count(46_702_792_704));
        Assert.Equal("999", InspectionReport.Count(999));
    }
}
