using MoECompress.Formats.Errors;
using MoECompress.Formats.Safetensors;

namespace MoECompress.Formats.Quantized;

/// <summary>
/// The GPTQ v1 tensors of one Linear module <c>prefix</c> (AutoGPTQ / GPTQModel <c>checkpoint_format: "gptq"</c>):
/// <list type="bullet">
/// <item><c>prefix.qweight</c> I32 [in·b/32, out]: codes packed along the input dimension (<see cref="GptqPacking.PackDim0"/>).</item>
/// <item><c>prefix.qzeros</c> I32 [groups, out·b/32]: zero points minus one (the v1 convention; v2 stores z itself),
/// packed along the output dimension.</item>
/// <item><c>prefix.scales</c> F16 [groups, out].</item>
/// <item><c>prefix.g_idx</c> I32 [in]: each input column's group.</item>
/// </list>
/// Ŵ[o, c] = scales[g, o] · (q[c, o] − z[g, o]) with g = g_idx[c]. The layout needs in and out to be multiples of 32
/// and 2, 3, 4 or 8 bits.
/// </summary>
public static class GptqLayout
{
    public const string QWeight = "qweight", QZeros = "qzeros", Scales = "scales", GroupIndex = "g_idx";

    /// <summary>Suffixes of a module's tensors, in the order they are written.</summary>
    public static IReadOnlyList<string> Parts { get; } = [QWeight, QZeros, Scales, GroupIndex];

    /// <summary>The tensors of module <paramref name="prefix"/> (names, dtypes, shapes).</summary>
    /// <exception cref="MoeCompressException">Usage: the width or the dimensions cannot be stored in this layout.</exception>
    public static IReadOnlyList<TensorSpec> Specs(string prefix, long outFeatures, long inFeatures, PackedScheme scheme)
    {
        Check(prefix, outFeatures, inFeatures, scheme.Bits);
        int b = scheme.Bits, groups = scheme.Groups(inFeatures);
        return
        [
            new($"{prefix}.{QWeight}", SafetensorsDType.I32, [inFeatures / 32 * b, outFeatures]),
            new($"{prefix}.{QZeros}", SafetensorsDType.I32, [groups, outFeatures / 32 * b]),
            new($"{prefix}.{Scales}", SafetensorsDType.F16, [groups, outFeatures]),
            new($"{prefix}.{GroupIndex}", SafetensorsDType.I32, [inFeatures]),
        ];
    }

    /// <summary>Throws a one-line <see cref="ErrorKind.Usage"/> error when the module cannot be stored as GPTQ.</summary>
    public static void Check(string prefix, long outFeatures, long inFeatures, int bits)
    {
        if (bits == 1)
            throw new MoeCompressException(ErrorKind.Usage,
                $"module '{prefix}': 1-bit sign × scale weights have no integer zero point in the gptq format; use --format dequantized");
        if (!PackedScheme.PackableBits.Contains(bits))
            throw new MoeCompressException(ErrorKind.Usage, $"module '{prefix}': the gptq format stores 2, 3, 4 or 8 bits, not {bits}");
        if (inFeatures % 32 != 0 || outFeatures % 32 != 0)
            throw new MoeCompressException(ErrorKind.Usage,
                $"module '{prefix}' is [{outFeatures}, {inFeatures}]: the gptq format packs 32 rows and columns at a time " +
                "(both dimensions must be multiples of 32); use --format compressed-tensors or dequantized");
    }

    /// <summary>Encodes a quantized matrix as the four GPTQ v1 tensors of module <paramref name="prefix"/>.</summary>
    /// <exception cref="MoeCompressException">Usage: the module cannot be stored as GPTQ; InvalidValues: a zero point is
    /// not an integer in 1..2^b (v1 stores z − 1 in b bits).</exception>
    public static IReadOnlyList<EncodedTensor> Encode(string prefix, UnpackedMatrix m)
    {
        Check(prefix, m.OutFeatures, m.InFeatures, m.Bits);
        int b = m.Bits, rows = m.OutFeatures, cols = m.InFeatures, groups = m.Groups;
        var codesT = PackedTensorReader.Transpose(m.Codes, rows, cols); // [in, out]
        var qweight = GptqPacking.PackDim0(codesT, cols, rows, b);

        var zerosMinusOne = new int[(long)groups * rows]; // [groups, out]
        var scalesT = new float[(long)groups * rows];
        for (int r = 0; r < rows; r++)
        {
            for (int g = 0; g < groups; g++)
            {
                float z = m.Zeros[r * groups + g];
                if (z != MathF.Round(z) || z < 1 || z > 1 << b)
                    throw new MoeCompressException(ErrorKind.InvalidValues,
                        $"module '{prefix}': zero point {z} (row {r}, group {g}) cannot be stored in the gptq v1 layout, which keeps z − 1 in {b} bits");
                zerosMinusOne[g * rows + r] = (int)z - 1;
                scalesT[g * rows + r] = m.Scales[r * groups + g];
            }
        }
        var qzeros = GptqPacking.PackDim1(zerosMinusOne, groups, rows, b);
        return
        [
            new($"{prefix}.{QWeight}", SafetensorsDType.I32, [cols / 32 * b, rows], PackedTensorReader.Bytes(qweight)),
            new($"{prefix}.{QZeros}", SafetensorsDType.I32, [groups, rows / 32 * b], PackedTensorReader.Bytes(qzeros)),
            new($"{prefix}.{Scales}", SafetensorsDType.F16, [groups, rows], PackedTensorReader.FloatBytes(scalesT, SafetensorsDType.F16)),
            new($"{prefix}.{GroupIndex}", SafetensorsDType.I32, [cols], PackedTensorReader.Bytes(m.GroupIndex)),
        ];
    }

    /// <summary>
    /// Reads module <paramref name="prefix"/> back: <paramref name="bits"/> from the config, <paramref name="zerosMinusOne"/>
    /// for v1 checkpoints (false for <c>gptq_v2</c>), <paramref name="groupSize"/> for checkpoints without g_idx.
    /// </summary>
    /// <exception cref="CheckpointFormatException">A part is missing or has the wrong dtype or shape (names the tensor and <paramref name="file"/>).</exception>
    public static UnpackedMatrix Decode(ITensorSource src, string prefix, int bits, bool zerosMinusOne, int groupSize, string file)
    {
        var (outFeatures, inFeatures, groups) = Shape(src, prefix, bits, file);
        var qweight = PackedTensorReader.Int32(src, $"{prefix}.{QWeight}", file);
        var codesT = GptqPacking.UnpackDim0(qweight, inFeatures, outFeatures, bits); // [in, out]
        var codes = PackedTensorReader.Transpose(codesT, inFeatures, outFeatures);
        var qzeros = PackedTensorReader.Int32(src, $"{prefix}.{QZeros}", file);
        var zerosT = GptqPacking.UnpackDim1(qzeros, groups, outFeatures, bits); // [groups, out]
        var scalesT = PackedTensorReader.Floats(src, $"{prefix}.{Scales}", file);
        var zeros = new float[(long)outFeatures * groups];
        var scales = new float[(long)outFeatures * groups];
        int add = zerosMinusOne ? 1 : 0;
        for (int g = 0; g < groups; g++)
            for (int r = 0; r < outFeatures; r++)
            {
                zeros[r * groups + g] = zerosT[g * outFeatures + r] + add;
                scales[r * groups + g] = scalesT[g * outFeatures + r];
            }
        int[] gidx;
        string gidxName = $"{prefix}.{GroupIndex}";
        if (src.Contains(gidxName))
        {
            gidx = PackedTensorReader.Int32(src, gidxName, file);
            foreach (var g in gidx)
                if ((uint)g >= (uint)groups)
                    throw new CheckpointFormatException(file, gidxName, null, $"holds group {g}, but '{prefix}.{Scales}' has {groups} groups");
        }
        else
        {
            int size = groupSize <= 0 ? inFeatures : groupSize;
            if ((inFeatures + size - 1) / size != groups)
                throw new CheckpointFormatException(file, $"{prefix}.{Scales}", null,
                    $"has {groups} groups, but {inFeatures} columns in groups of {size} make {(inFeatures + size - 1) / size} (and there is no g_idx)");
            gidx = UnpackedMatrix.SequentialGroupIndex(inFeatures, size);
        }
        return new UnpackedMatrix(bits, outFeatures, inFeatures, groups, codes, scales, zeros, gidx);
    }

    /// <summary>(out, in, groups) of a stored module, checked across its parts.</summary>
    public static (int Out, int In, int Groups) Shape(ITensorSource src, string prefix, int bits, string file)
    {
        var qw = PackedTensorReader.Info(src, $"{prefix}.{QWeight}", file);
        PackedTensorReader.ExpectDType(qw, file, SafetensorsDType.I32);
        if (qw.Shape.Length != 2)
            throw new CheckpointFormatException(file, qw.Name, null, $"has shape [{string.Join(", ", qw.Shape)}], expected [in·bits/32, out]");
        long outFeatures = qw.Shape[1];
        long inFeatures;
        string gidxName = $"{prefix}.{GroupIndex}";
        if (src.Contains(gidxName))
        {
            var gi = src.GetInfo(gidxName);
            if (gi.Shape.Length != 1)
                throw new CheckpointFormatException(file, gidxName, null, $"has shape [{string.Join(", ", gi.Shape)}], expected [in]");
            inFeatures = gi.Shape[0];
        }
        else
        {
            inFeatures = qw.Shape[0] * 32 / bits;
        }
        if (inFeatures % 32 != 0 || qw.Shape[0] != inFeatures / 32 * bits)
            throw new CheckpointFormatException(file, qw.Name, null,
                $"has {qw.Shape[0]} rows, but {inFeatures} input columns at {bits} bits (config.json) need {inFeatures / 32 * bits}");
        var sc = PackedTensorReader.Info(src, $"{prefix}.{Scales}", file);
        if (sc.Shape.Length != 2 || sc.Shape[1] != outFeatures || sc.Shape[0] < 1)
            throw new CheckpointFormatException(file, sc.Name, null, $"has shape [{string.Join(", ", sc.Shape)}], expected [groups, {outFeatures}]");
        long groups = sc.Shape[0];
        var qz = PackedTensorReader.Info(src, $"{prefix}.{QZeros}", file);
        PackedTensorReader.ExpectDType(qz, file, SafetensorsDType.I32);
        if (outFeatures % 32 != 0)
            throw new CheckpointFormatException(file, qw.Name, null, $"has {outFeatures} output columns, not a multiple of 32 as the gptq layout needs");
        PackedTensorReader.ExpectShape(qz, file, groups, outFeatures / 32 * bits);
        return (checked((int)outFeatures), checked((int)inFeatures), checked((int)groups));
    }
}
