using MoECompress.Formats.Errors;
using MoECompress.Formats.Safetensors;

namespace MoECompress.Formats.Quantized;

/// <summary>
/// The compressed-tensors <c>pack-quantized</c> tensors of one Linear module <c>prefix</c>:
/// <list type="bullet">
/// <item><c>prefix.weight_packed</c> I32 [out, ⌈in / ⌊32/b⌋⌉]: codes packed along the input dimension
/// (<see cref="CompressedTensorsPacking.PackDim1"/>), stored unsigned (signed value + 2^(b−1)).</item>
/// <item><c>prefix.weight_scale</c> [out, groups] in the model's float dtype.</item>
/// <item><c>prefix.weight_zero_point</c> I32 [⌈out / ⌊32/b⌋⌉, groups], asymmetric schemes only: zero points packed along
/// the output dimension (symmetric schemes have zero point 0 in the signed convention, i.e. 2^(b−1) unsigned).</item>
/// <item><c>prefix.weight_shape</c> I64 [2] = [out, in].</item>
/// <item><c>prefix.weight_g_idx</c> I32 [in], only with act-order (<c>actorder: "group"</c>).</item>
/// </list>
/// Ŵ = scale · (q_signed − zp_signed) = scale · (q − z) with the unsigned codes q and zero points z used here.
/// </summary>
public static class CompressedTensorsLayout
{
    public const string WeightPacked = "weight_packed", WeightScale = "weight_scale", WeightZeroPoint = "weight_zero_point",
        WeightShape = "weight_shape", WeightGroupIndex = "weight_g_idx";

    /// <summary>Suffixes of a module's tensors.</summary>
    public static IReadOnlyList<string> Parts { get; } = [WeightPacked, WeightScale, WeightZeroPoint, WeightShape, WeightGroupIndex];

    /// <summary>The dtype scales are stored in for a model whose weights were <paramref name="originalDType"/>.</summary>
    public static SafetensorsDType ScaleDType(SafetensorsDType originalDType) =>
        originalDType is SafetensorsDType.F16 or SafetensorsDType.BF16 or SafetensorsDType.F32 ? originalDType : SafetensorsDType.BF16;

    /// <summary>The tensors of module <paramref name="prefix"/> (names, dtypes, shapes).</summary>
    /// <exception cref="MoeCompressException">Usage: the width cannot be stored in this layout.</exception>
    public static IReadOnlyList<TensorSpec> Specs(string prefix, long outFeatures, long inFeatures, PackedScheme scheme,
        SafetensorsDType scaleDType, bool groupIndex)
    {
        Check(prefix, scheme.Bits);
        int b = scheme.Bits, groups = scheme.Groups(inFeatures);
        var specs = new List<TensorSpec>
        {
            new($"{prefix}.{WeightPacked}", SafetensorsDType.I32, [outFeatures, CompressedTensorsPacking.PackedLength(inFeatures, b)]),
            new($"{prefix}.{WeightScale}", scaleDType, [outFeatures, groups]),
        };
        if (!scheme.Symmetric)
            specs.Add(new($"{prefix}.{WeightZeroPoint}", SafetensorsDType.I32, [CompressedTensorsPacking.PackedLength(outFeatures, b), groups]));
        specs.Add(new($"{prefix}.{WeightShape}", SafetensorsDType.I64, [2]));
        if (groupIndex) specs.Add(new($"{prefix}.{WeightGroupIndex}", SafetensorsDType.I32, [inFeatures]));
        return specs;
    }

    /// <summary>Throws a one-line <see cref="ErrorKind.Usage"/> error when the width cannot be stored.</summary>
    public static void Check(string prefix, int bits)
    {
        if (bits == 1)
            throw new MoeCompressException(ErrorKind.Usage,
                $"module '{prefix}': 1-bit sign × scale weights have no integer zero point in the compressed-tensors format; use --format dequantized");
        if (!PackedScheme.PackableBits.Contains(bits))
            throw new MoeCompressException(ErrorKind.Usage, $"module '{prefix}': the compressed-tensors format stores 2, 3, 4 or 8 bits here, not {bits}");
    }

    /// <summary>
    /// Encodes a quantized matrix as the tensors of module <paramref name="prefix"/>. Without
    /// <paramref name="groupIndex"/> the matrix must have sequential groups of <paramref name="scheme"/>'s size.
    /// </summary>
    /// <exception cref="MoeCompressException">Usage: width not storable; InvalidValues: zero points that the scheme cannot
    /// hold (not 2^(b−1) for a symmetric scheme, not an integer in 0..2^b − 1), or act-order groups without a g_idx.</exception>
    public static IReadOnlyList<EncodedTensor> Encode(string prefix, UnpackedMatrix m, PackedScheme scheme,
        SafetensorsDType scaleDType, bool groupIndex)
    {
        Check(prefix, m.Bits);
        if (scheme.Bits != m.Bits)
            throw new ArgumentException($"module '{prefix}': the matrix has {m.Bits} bits but the scheme says {scheme.Bits}", nameof(scheme));
        if (scheme.Groups(m.InFeatures) != m.Groups)
            throw new ArgumentException($"module '{prefix}': the matrix has {m.Groups} groups but the scheme makes {scheme.Groups(m.InFeatures)}", nameof(scheme));
        if (!groupIndex && !m.HasSequentialGroups(scheme.GroupSize))
            throw new MoeCompressException(ErrorKind.InvalidValues,
                $"module '{prefix}': columns are grouped out of order (act-order) but no weight_g_idx is written");
        int b = m.Bits, rows = m.OutFeatures, cols = m.InFeatures, groups = m.Groups, half = 1 << (b - 1), maxq = (1 << b) - 1;
        var zeros = new int[m.Zeros.Length];
        for (int i = 0; i < zeros.Length; i++)
        {
            float z = m.Zeros[i];
            bool ok = scheme.Symmetric ? z == half : z == MathF.Round(z) && z >= 0 && z <= maxq;
            if (!ok)
                throw new MoeCompressException(ErrorKind.InvalidValues,
                    $"module '{prefix}': zero point {z} (row {i / groups}, group {i % groups}) cannot be stored in a " +
                    $"{(scheme.Symmetric ? "symmetric scheme (needs " + half + ")" : $"{b}-bit asymmetric scheme")}");
            zeros[i] = (int)z;
        }
        var result = new List<EncodedTensor>
        {
            new($"{prefix}.{WeightPacked}", SafetensorsDType.I32, [rows, CompressedTensorsPacking.PackedLength(cols, b)],
                PackedTensorReader.Bytes(CompressedTensorsPacking.PackDim1(m.Codes, rows, cols, b))),
            new($"{prefix}.{WeightScale}", scaleDType, [rows, groups], PackedTensorReader.FloatBytes(m.Scales, scaleDType)),
        };
        if (!scheme.Symmetric)
            result.Add(new($"{prefix}.{WeightZeroPoint}", SafetensorsDType.I32, [CompressedTensorsPacking.PackedLength(rows, b), groups],
                PackedTensorReader.Bytes(CompressedTensorsPacking.PackDim0(zeros, rows, groups, b))));
        result.Add(new($"{prefix}.{WeightShape}", SafetensorsDType.I64, [2], PackedTensorReader.Bytes(new long[] { rows, cols })));
        if (groupIndex)
            result.Add(new($"{prefix}.{WeightGroupIndex}", SafetensorsDType.I32, [cols], PackedTensorReader.Bytes(m.GroupIndex)));
        return result;
    }

    /// <summary>Reads module <paramref name="prefix"/> back with the scheme its config group declares.</summary>
    /// <exception cref="CheckpointFormatException">A part is missing or has the wrong dtype or shape.</exception>
    public static UnpackedMatrix Decode(ITensorSource src, string prefix, PackedScheme scheme, string file)
    {
        var (rows, cols, groups) = Shape(src, prefix, scheme, file);
        int b = scheme.Bits, half = 1 << (b - 1);
        var codes = CompressedTensorsPacking.UnpackDim1(PackedTensorReader.Int32(src, $"{prefix}.{WeightPacked}", file), rows, cols, b);
        var scales = PackedTensorReader.Floats(src, $"{prefix}.{WeightScale}", file);
        var zeros = new float[(long)rows * groups];
        string zpName = $"{prefix}.{WeightZeroPoint}";
        if (src.Contains(zpName))
        {
            var info = src.GetInfo(zpName);
            if (info.DType == SafetensorsDType.I32 && info.Shape.AsSpan().SequenceEqual([CompressedTensorsPacking.PackedLength(rows, b), groups]))
            {
                var z = CompressedTensorsPacking.UnpackDim0(PackedTensorReader.Int32(src, zpName, file), rows, groups, b);
                for (int i = 0; i < zeros.Length; i++) zeros[i] = z[i];
            }
            else if (info.Shape.AsSpan().SequenceEqual([(long)rows, groups]))
            {
                // Unpacked signed zero points (older writers, or 8-bit channel schemes).
                var z = PackedTensorReader.Integers(src, zpName, file);
                for (int i = 0; i < zeros.Length; i++) zeros[i] = z[i] + half;
            }
            else
            {
                throw new CheckpointFormatException(file, zpName, null,
                    $"is {info.DType.ToHeaderName()} [{string.Join(", ", info.Shape)}], expected I32 [{CompressedTensorsPacking.PackedLength(rows, b)}, {groups}] (packed) or [{rows}, {groups}]");
            }
        }
        else if (!scheme.Symmetric)
        {
            throw new CheckpointFormatException(file, zpName, null, "is missing, but the module's config group is asymmetric");
        }
        else
        {
            Array.Fill(zeros, half);
        }
        int[] gidx;
        string gName = $"{prefix}.{WeightGroupIndex}";
        if (src.Contains(gName))
        {
            gidx = PackedTensorReader.Int32(src, gName, file);
            if (gidx.Length != cols)
                throw new CheckpointFormatException(file, gName, null, $"holds {gidx.Length} entries, expected {cols}");
            foreach (var g in gidx)
                if ((uint)g >= (uint)groups)
                    throw new CheckpointFormatException(file, gName, null, $"holds group {g}, but '{prefix}.{WeightScale}' has {groups} groups");
        }
        else
        {
            gidx = UnpackedMatrix.SequentialGroupIndex(cols, groups == 1 ? -1 : scheme.GroupSize);
        }
        return new UnpackedMatrix(b, rows, cols, groups, codes, scales, zeros, gidx);
    }

    /// <summary>(out, in, groups) of a stored module, checked across its parts.</summary>
    public static (int Out, int In, int Groups) Shape(ITensorSource src, string prefix, PackedScheme scheme, string file)
    {
        string shapeName = $"{prefix}.{WeightShape}";
        var shape = PackedTensorReader.Integers(src, shapeName, file);
        if (shape.Length != 2 || shape[0] < 0 || shape[1] < 0)
            throw new CheckpointFormatException(file, shapeName, null, $"holds [{string.Join(", ", shape)}], expected [out, in]");
        int rows = checked((int)shape[0]), cols = checked((int)shape[1]), b = scheme.Bits;
        var packed = PackedTensorReader.Info(src, $"{prefix}.{WeightPacked}", file);
        PackedTensorReader.ExpectDType(packed, file, SafetensorsDType.I32);
        PackedTensorReader.ExpectShape(packed, file, rows, CompressedTensorsPacking.PackedLength(cols, b));
        var scale = PackedTensorReader.Info(src, $"{prefix}.{WeightScale}", file);
        if (scale.Shape.Length != 2 || scale.Shape[0] != rows || scale.Shape[1] < 1)
            throw new CheckpointFormatException(file, scale.Name, null, $"has shape [{string.Join(", ", scale.Shape)}], expected [{rows}, groups]");
        int groups = checked((int)scale.Shape[1]);
        bool hasGroupIndex = src.Contains($"{prefix}.{WeightGroupIndex}");
        if (!hasGroupIndex && groups != 1)
        {
            int size = scheme.GroupSize <= 0 ? cols : scheme.GroupSize;
            if ((cols + size - 1) / size != groups)
                throw new CheckpointFormatException(file, scale.Name, null,
                    $"has {groups} groups, but {cols} columns in groups of {size} (config.json) make {(cols + size - 1) / size}");
        }
        return (rows, cols, groups);
    }
}
