using System.Buffers.Binary;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Safetensors;
using TorchSharp;

namespace MoECompress.Formats.Families;

/// <summary>
/// Loads one routed expert's projection as a float32 [out, in] matrix, whatever the on-disk layout: per-expert
/// tensors, fused [E, out, in] (only that expert's bytes are read), GPT-OSS fused-transposed [E, in, out] with
/// interleaved gate/up rows, GPT-OSS MXFP4 blocks/scales (decoded), and FP8 per-expert weights with DeepSeek block
/// scales (<c>weight_scale_inv</c>, 128×128 blocks). The caller owns the returned tensor.
/// </summary>
public static class ExpertWeights
{
    /// <summary>FP4 E2M1 code → value (bit 3 = sign): 0, 0.5, 1, 1.5, 2, 3, 4, 6.</summary>
    private static readonly float[] Fp4Values =
        [0f, 0.5f, 1f, 1.5f, 2f, 3f, 4f, 6f, -0f, -0.5f, -1f, -1.5f, -2f, -3f, -4f, -6f];

    /// <summary>DeepSeek-V3 FP8 block size of weight_scale_inv.</summary>
    private const int Fp8BlockSize = 128;

    /// <summary>The expert's projection weight, float32 [out, in] (or its stored 16-bit type with <paramref name="keep16Bit"/>).</summary>
    public static torch.Tensor Load(ITensorSource src, IMoEFamily fam, MoEConfig cfg, int layer, int expert, ExpertProjection proj,
        bool keep16Bit = false)
    {
        CheckExpert(cfg, layer, expert);
        var r = fam.ExpertTensor(layer, expert, proj, cfg);
        return Load(src, r, keep16Bit);
    }

    /// <summary>The expert's projection bias, float32 [out], or null when the family has no expert biases.</summary>
    public static torch.Tensor? LoadBias(ITensorSource src, IMoEFamily fam, MoEConfig cfg, int layer, int expert, ExpertProjection proj)
    {
        CheckExpert(cfg, layer, expert);
        var r = fam.ExpertTensor(layer, expert, proj, cfg);
        if (r.BiasName is null) return null;
        var info = src.GetInfo(r.BiasName);
        int e = r.FusedIndex ?? 0;
        long width = info.Shape.Length == 2 ? info.Shape[1] : info.Shape[0];
        long rowBytes = width * info.DType.ItemSize();
        var bytes = info.Shape.Length == 2 ? src.GetBytes(r.BiasName).Slice(checked((int)(e * rowBytes)), checked((int)rowBytes)) : src.GetBytes(r.BiasName);
        using var scope = torch.NewDisposeScope();
        var row = FromBytes(bytes, info.DType, [width], r.BiasName);
        return SelectRows(row, r, width).to(torch.ScalarType.Float32).contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The matrix an <see cref="ExpertTensorRef"/> points at, float32 [out, in]. With <paramref name="keep16Bit"/>, a
    /// matrix stored as bfloat16 or float16 keeps that type (half the memory; widening it later is exact); FP8 and MXFP4
    /// weights are always decoded to float32.
    /// </summary>
    public static torch.Tensor Load(ITensorSource src, ExpertTensorRef r, bool keep16Bit = false)
    {
        using var scope = torch.NewDisposeScope();
        var info = src.GetInfo(r.TensorName);
        torch.Tensor result = r.Layout switch
        {
            ExpertLayout.PerExpert => LoadPerExpert(src, r, info, keep16Bit),
            ExpertLayout.Fused => LoadFused(src, r, info, transposed: false),
            ExpertLayout.FusedTransposed => LoadFused(src, r, info, transposed: true),
            ExpertLayout.FusedMxfp4 => LoadMxfp4(src, r, info),
            _ => throw new ArgumentOutOfRangeException(nameof(r), r.Layout, "unknown expert layout"),
        };
        if (!(keep16Bit && result.dtype is torch.ScalarType.BFloat16 or torch.ScalarType.Float16))
            result = result.to(torch.ScalarType.Float32);
        return result.contiguous().MoveToOuterDisposeScope();
    }

    private static void CheckExpert(MoEConfig cfg, int layer, int expert)
    {
        if (!cfg.HasRoutedExperts(layer))
            throw new ArgumentOutOfRangeException(nameof(layer), layer, $"layer {layer} has no routed experts");
        if (expert < 0 || expert >= cfg.NumExperts)
            throw new ArgumentOutOfRangeException(nameof(expert), expert, $"expert must be in 0..{cfg.NumExperts - 1}");
    }

    private static torch.Tensor LoadPerExpert(ITensorSource src, ExpertTensorRef r, TensorInfo info, bool keep16Bit)
    {
        if (info.Shape.Length != 2) throw Shape(r.TensorName, info, "a 2-D [out, in] matrix");
        torch.Tensor w;
        if (info.DType.IsFloat8())
        {
            w = FromBytes(src.GetBytes(r.TensorName), info.DType, info.Shape, r.TensorName);
            var scaleName = r.TensorName + "_scale_inv";
            if (src.Contains(scaleName)) w = ApplyBlockScales(w, src.ToTensor(scaleName, torch.ScalarType.Float32), scaleName);
        }
        else
        {
            var type = keep16Bit && info.DType is SafetensorsDType.BF16 or SafetensorsDType.F16 ? info.DType.ToScalarType() : torch.ScalarType.Float32;
            w = src.ToTensor(r.TensorName, type);
        }
        return SelectRows(w, r, info.Shape[0]);
    }

    /// <summary>w[i, j] × scale_inv[i / 128, j / 128] (DeepSeek-V3's FP8 dequantization).</summary>
    private static torch.Tensor ApplyBlockScales(torch.Tensor w, torch.Tensor scaleInv, string scaleName)
    {
        long rows = w.shape[0], cols = w.shape[1];
        long br = (rows + Fp8BlockSize - 1) / Fp8BlockSize, bc = (cols + Fp8BlockSize - 1) / Fp8BlockSize;
        if (scaleInv.dim() != 2 || scaleInv.shape[0] != br || scaleInv.shape[1] != bc)
            throw new MoeCompressException(ErrorKind.InvalidCheckpoint,
                $"tensor '{scaleName}' has shape [{string.Join(", ", scaleInv.shape)}] but its weight [{rows}, {cols}] needs [{br}, {bc}] 128×128 block scales");
        var expanded = scaleInv.repeat_interleave(Fp8BlockSize, 0).repeat_interleave(Fp8BlockSize, 1)
            .narrow(0, 0, rows).narrow(1, 0, cols);
        return w * expanded;
    }

    private static torch.Tensor LoadFused(ITensorSource src, ExpertTensorRef r, TensorInfo info, bool transposed)
    {
        if (info.Shape.Length != 3) throw Shape(r.TensorName, info, "a 3-D [experts, rows, cols] tensor");
        int e = r.FusedIndex ?? throw new ArgumentException($"fused reference to '{r.TensorName}' has no FusedIndex", nameof(r));
        if (e < 0 || e >= info.Shape[0])
            throw new MoeCompressException(ErrorKind.InvalidCheckpoint,
                $"tensor '{r.TensorName}' holds {info.Shape[0]} experts; expert {e} is not there");
        long d1 = info.Shape[1], d2 = info.Shape[2];
        long es = info.DType.ItemSize();
        long slab = d1 * d2 * es;
        var all = src.GetBytes(r.TensorName);
        long outRows = transposed ? d2 : d1;

        if (!transposed && !r.Interleaved)
        {
            // Read only the selected rows of this expert's slab.
            long start = r.RowStart, count = r.RowCount < 0 ? d1 - r.RowStart : r.RowCount;
            CheckRows(r, outRows);
            var bytes = all.Slice(checked((int)(e * slab + start * d2 * es)), checked((int)(count * d2 * es)));
            return FromBytes(bytes, info.DType, [count, d2], r.TensorName);
        }
        var slabBytes = all.Slice(checked((int)(e * slab)), checked((int)slab));
        var m = FromBytes(slabBytes, info.DType, [d1, d2], r.TensorName);
        if (transposed) m = m.t();
        return SelectRows(m, r, outRows);
    }

    private static torch.Tensor LoadMxfp4(ITensorSource src, ExpertTensorRef r, TensorInfo blocksInfo)
    {
        var scalesName = r.ScalesName ?? throw new ArgumentException($"MXFP4 reference to '{r.TensorName}' has no ScalesName", nameof(r));
        var scalesInfo = src.GetInfo(scalesName);
        if (blocksInfo.Shape.Length != 4 || blocksInfo.Shape[3] != 16 || blocksInfo.DType != SafetensorsDType.U8)
            throw Shape(r.TensorName, blocksInfo, "U8 MXFP4 blocks [experts, rows, groups, 16]");
        if (scalesInfo.DType != SafetensorsDType.U8 || !scalesInfo.Shape.SequenceEqual(blocksInfo.Shape[..3]))
            throw Shape(scalesName, scalesInfo, $"U8 MXFP4 scales [{string.Join(", ", blocksInfo.Shape[..3])}]");
        int e = r.FusedIndex ?? throw new ArgumentException($"fused reference to '{r.TensorName}' has no FusedIndex", nameof(r));
        long rows = blocksInfo.Shape[1], groups = blocksInfo.Shape[2];
        CheckRows(r, rows);
        var rowIndices = RowIndices(r, rows);
        long cols = groups * 32;
        var blocks = src.GetBytes(r.TensorName).Slice(checked((int)(e * rows * groups * 16)), checked((int)(rows * groups * 16)));
        var scales = src.GetBytes(scalesName).Slice(checked((int)(e * rows * groups)), checked((int)(rows * groups)));
        var values = new float[rowIndices.Length * cols];
        for (int i = 0; i < rowIndices.Length; i++)
            DecodeMxfp4Row(blocks.Slice((int)(rowIndices[i] * groups * 16), (int)(groups * 16)),
                scales.Slice((int)(rowIndices[i] * groups), (int)groups), values.AsSpan((int)(i * cols), (int)cols));
        return torch.tensor(values, [rowIndices.Length, cols]);
    }

    /// <summary>
    /// Decodes one MXFP4 row: for each group g of 32 values, 16 bytes whose low nibble is the even element and high nibble
    /// the odd one (FP4 E2M1), times 2^(scale[g] − 127).
    /// </summary>
    public static void DecodeMxfp4Row(ReadOnlySpan<byte> blocks, ReadOnlySpan<byte> scales, Span<float> output)
    {
        if (blocks.Length != scales.Length * 16 || output.Length != scales.Length * 32)
            throw new ArgumentException("MXFP4 row: blocks must be 16 bytes and output 32 values per scale");
        for (int g = 0; g < scales.Length; g++)
        {
            float scale = MathF.ScaleB(1f, scales[g] - 127);
            for (int b = 0; b < 16; b++)
            {
                byte v = blocks[g * 16 + b];
                output[g * 32 + 2 * b] = Fp4Values[v & 0x0F] * scale;
                output[g * 32 + 2 * b + 1] = Fp4Values[v >> 4] * scale;
            }
        }
    }

    private static long[] RowIndices(ExpertTensorRef r, long rows)
    {
        long count = r.RowCount < 0 ? (r.Interleaved ? (rows - r.RowStart + 1) / 2 : rows - r.RowStart) : r.RowCount;
        long step = r.Interleaved ? 2 : 1;
        var idx = new long[count];
        for (long i = 0; i < count; i++) idx[i] = r.RowStart + i * step;
        return idx;
    }

    private static void CheckRows(ExpertTensorRef r, long rows)
    {
        long count = r.RowCount < 0 ? 1 : r.RowCount;
        long last = r.RowStart + (count - 1) * (r.Interleaved ? 2 : 1);
        if (r.RowStart < 0 || last >= rows)
            throw new MoeCompressException(ErrorKind.InvalidCheckpoint,
                $"tensor '{r.TensorName}' has {rows} rows per expert; rows {r.RowStart}..{last} are not there");
    }

    /// <summary>Applies the reference's row selection (contiguous range, or every other row when interleaved) to dimension 0.</summary>
    private static torch.Tensor SelectRows(torch.Tensor m, ExpertTensorRef r, long rows)
    {
        if (r.RowStart == 0 && r.RowCount < 0 && !r.Interleaved) return m;
        CheckRows(r, rows);
        if (r.Interleaved)
        {
            long count = r.RowCount < 0 ? (rows - r.RowStart + 1) / 2 : r.RowCount;
            return m.slice(0, r.RowStart, r.RowStart + 2 * (count - 1) + 1, 2);
        }
        return m.narrow(0, r.RowStart, r.RowCount < 0 ? rows - r.RowStart : r.RowCount);
    }

    /// <summary>A new tensor holding a copy of raw little-endian bytes (F8 decoded to float32).</summary>
    internal static torch.Tensor FromBytes(ReadOnlySpan<byte> bytes, SafetensorsDType dtype, long[] shape, string name)
    {
        if (dtype.IsFloat8())
        {
            var values = new float[bytes.Length];
            Float8.Decode(dtype, bytes, values);
            return torch.tensor(values, shape);
        }
        if (!dtype.HasExactTorchType())
            throw new MoeCompressException(ErrorKind.InvalidCheckpoint, $"tensor '{name}': dtype {dtype} cannot be loaded as an expert weight");
        var t = torch.empty(shape, dtype.ToScalarType());
        bytes.CopyTo(t.bytes);
        return t;
    }

    private static MoeCompressException Shape(string name, TensorInfo info, string expected) =>
        new(ErrorKind.InvalidCheckpoint, $"tensor '{name}' is {info.DType} [{string.Join(", ", info.Shape)}] but an expert weight here must be {expected}");

    /// <summary>Reads element <paramref name="index"/> of a float tensor's raw bytes as a double (F16/BF16/F32/F64).</summary>
    internal static double ReadFloat(ReadOnlySpan<byte> bytes, SafetensorsDType dtype, long index) => dtype switch
    {
        SafetensorsDType.F32 => BinaryPrimitives.ReadSingleLittleEndian(bytes[(int)(index * 4)..]),
        SafetensorsDType.F64 => BinaryPrimitives.ReadDoubleLittleEndian(bytes[(int)(index * 8)..]),
        SafetensorsDType.F16 => (double)BinaryPrimitives.ReadHalfLittleEndian(bytes[(int)(index * 2)..]),
        SafetensorsDType.BF16 => BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(bytes[(int)(index * 2)..]) << 16),
        SafetensorsDType.F8_E4M3 => Float8.DecodeE4M3(bytes[(int)index]),
        SafetensorsDType.F8_E5M2 => Float8.DecodeE5M2(bytes[(int)index]),
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "not a floating-point dtype"),
    };
}
