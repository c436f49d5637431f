using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;
using MoECompress.Formats.Gguf;

namespace MoECompress.Compression.Gguf;

/// <summary>
/// The tensors of a GGUF export, from headers only: every Hugging Face tensor mapped to its GGUF name (unknown tensors
/// are an error naming them), the routed experts of each MoE layer stacked per projection, MTP layers left out, and
/// the requested type of each tensor in layers: routers, biases and norms F32; <c>--tensor-type</c> overrides (first
/// match); <c>--uniform</c>; otherwise <see cref="GgufExportOptions.OtherType"/> (experts get the allocation's types later).
/// </summary>
public sealed class GgufTensorPlan
{
    public IReadOnlyList<GgufTensorEntry> Entries { get; }
    /// <summary>The stacked expert tensors (the allocation's items).</summary>
    public IReadOnlyList<GgufTensorEntry> Experts => Entries.Where(e => e.Kind == GgufTensorSourceKind.StackedExperts).ToList();
    /// <summary>MTP layers left out (llama.cpp does not run them).</summary>
    public IReadOnlyList<int> SkippedMtpLayers { get; }

    private GgufTensorPlan(List<GgufTensorEntry> entries, List<int> mtp)
    {
        Entries = entries;
        SkippedMtpLayers = mtp;
    }

    public static GgufTensorPlan Build(ModelCheckpoint checkpoint, GgufArchitecture arch, GgufExportOptions options)
    {
        var moe = checkpoint.MoE;
        if (moe.ModelPrefix != "model.")
            throw new MoeCompressException(ErrorKind.InvalidConfig, $"{checkpoint.ConfigPath}: GGUF export reads checkpoints whose tensors start with 'model.', not '{moe.ModelPrefix}'");
        var ordered = new List<(int Order, int Seq, GgufTensorEntry Entry)>();
        var mtp = new SortedSet<int>();
        var seq = 0;
        foreach (var name in checkpoint.Tensors.Names)
        {
            var role = checkpoint.Classify(name);
            if (role.InMtp || (role.Layer is { } ml && ml >= moe.NumLayers))
            {
                if (role.Layer is { } l) mtp.Add(l);
                continue;
            }
            if (role.Role == TensorRole.RoutedExpert) continue;
            if (role.QuantScale || role.Role == TensorRole.Vision)
                throw new MoeCompressException(ErrorKind.InvalidConfig,
                    $"{checkpoint.Directory}: tensor '{name}' ({(role.QuantScale ? "a quantization scale" : "vision tower")}) has no GGUF counterpart here; dequantize or strip the checkpoint first");
            var info = checkpoint.Tensors.GetInfo(name);
            var dims = info.Shape.Reverse().ToArray();
            var layer = role.Layer ?? -1;
            var order = name == "model.embed_tokens.weight" ? -1 : role.Layer ?? int.MaxValue;
            if (arch.SplitsKvB && name.EndsWith(".self_attn.kv_b_proj.weight", StringComparison.Ordinal))
            {
                var r = new ConfigReader(checkpoint.Config, checkpoint.ConfigPath);
                int nope = r.Int("qk_nope_head_dim"), v = r.Int("v_head_dim"), heads = r.Int("num_attention_heads");
                long rank = info.Shape[1];
                if (info.Shape[0] != heads * (nope + v))
                    throw new MoeCompressException(ErrorKind.InvalidConfig, $"{checkpoint.ConfigPath}: '{name}' has {info.Shape[0]} rows, expected num_attention_heads·(qk_nope_head_dim + v_head_dim) = {heads * (nope + v)}");
                ordered.Add((order, seq++, new GgufTensorEntry($"blk.{layer}.attn_k_b.weight", [nope, rank, heads], GgufTensorSourceKind.KvBKeys, name, layer, null)));
                ordered.Add((order, seq++, new GgufTensorEntry($"blk.{layer}.attn_v_b.weight", [rank, v, heads], GgufTensorSourceKind.KvBValues, name, layer, null)));
                continue;
            }
            var gguf = arch.GgufNameOf(name)
                       ?? throw new MoeCompressException(ErrorKind.InvalidConfig,
                           $"{checkpoint.Directory}: tensor '{name}' ({role.Role}) has no {arch.Name} GGUF name; GGUF export cannot place it");
            var alwaysF32 = dims.Length == 1 || role.Role is TensorRole.RouterWeight or TensorRole.RouterBias or TensorRole.CorrectionBias or TensorRole.SharedExpertGate;
            ordered.Add((order, seq++, new GgufTensorEntry(gguf, dims, GgufTensorSourceKind.Tensor, name, layer, null) { AlwaysF32 = alwaysF32 }));
        }
        foreach (var layer in moe.MoELayerIndices())
            foreach (var p in new[] { ExpertProjection.Gate, ExpertProjection.Up, ExpertProjection.Down })
            {
                long h = moe.HiddenSize, i = moe.ExpertIntermediateSize;
                long[] dims = p == ExpertProjection.Down ? [i, h, moe.NumExperts] : [h, i, moe.NumExperts];
                ordered.Add((layer, seq++, new GgufTensorEntry(GgufArchitecture.StackedExpertName(layer, p), dims, GgufTensorSourceKind.StackedExperts, null, layer, p)));
            }
        var entries = ordered.OrderBy(o => o.Order).ThenBy(o => o.Seq).Select(o => o.Entry).ToList();
        foreach (var e in entries) e.Requested = RequestedType(e, options);
        return new GgufTensorPlan(entries, mtp.ToList());
    }

    /// <summary>Requested type by the documented layers of defaults (see the class summary).</summary>
    private static GgmlType RequestedType(GgufTensorEntry e, GgufExportOptions options)
    {
        if (e.AlwaysF32) return GgmlType.F32;
        foreach (var (pattern, type) in options.TensorTypes)
            if (pattern.IsMatch(e.Name)) return type;
        if (options.Uniform is { } u) return u;
        return e.Kind == GgufTensorSourceKind.StackedExperts ? options.Candidates.OrderBy(c => c.BitsPerWeight()).First() : options.OtherType;
    }

    /// <summary>True when an override fixes the type of <paramref name="e"/> (the allocation leaves it alone).</summary>
    public static bool Overridden(GgufTensorEntry e, GgufExportOptions options) => options.TensorTypes.Any(t => t.Pattern.IsMatch(e.Name));
}
