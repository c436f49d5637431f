using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;
using MoECompress.Formats.Safetensors;
using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Compression.Surgery;

/// <summary>
/// Produces the output tensors of <see cref="ExpertSurgery"/>: byte copies for untouched and kept tensors, router rows
/// (representative's row, or the member-weighted sum), fused [E', ...] tensors assembled slab by slab, and merged
/// experts' tensors from <see cref="IMergedExpertWeights"/>, placed by the family's <see cref="ExpertTensorRef"/>
/// (row ranges, gate/up interleaving, transposition). Holds one tensor at a time.
/// </summary>
internal sealed class RoutedTensorWriter(RoutedTensorLayout layout, ExpertSurgeryPlan plan, MoEConfig outConfig, CheckpointWriter writer)
{
    private static readonly ExpertProjection[] Projections = [ExpertProjection.Gate, ExpertProjection.Up, ExpertProjection.Down];

    private ITensorSource Source => layout.Input.Tensors;
    private IMoEFamily Family => layout.Family;
    private MoEConfig Config => layout.Config;

    public void Write(SurgeryTensor t, CancellationToken cancellationToken)
    {
        switch (t.Kind)
        {
            case SurgeryTensorKind.Copy:
            case SurgeryTensorKind.ExpertCopy:
                writer.CopyTensorFrom(t.Name, Source, t.Source, cancellationToken);
                break;
            case SurgeryTensorKind.RouterRows:
                WriteRouterRows(t);
                break;
            case SurgeryTensorKind.FusedExperts:
                WriteFused(t, cancellationToken);
                break;
            case SurgeryTensorKind.ExpertMerged:
                WriteMergedExpertTensor(t);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(t), t.Kind, "unknown surgery tensor kind");
        }
    }

    // ---------------------------------------------------------------- router rows

    private void WriteRouterRows(SurgeryTensor t)
    {
        var info = Source.GetInfo(t.Source);
        long rowBytes = info.ByteLength / Config.NumExperts;
        long rowElements = rowBytes / info.DType.ItemSize();
        var list = plan.Layers[t.Layer];
        var output = new byte[checked(rowBytes * list.Count)];
        for (int k = 0; k < list.Count; k++)
        {
            var o = list[k];
            var destination = output.AsSpan(checked((int)(k * rowBytes)), checked((int)rowBytes));
            if (o.RouterRow == RouterRowRule.Representative)
            {
                SurgeryTensorBytes.Range(Source, t.Source, o.Representative * rowBytes, rowBytes).CopyTo(destination);
                continue;
            }
            using var scope = NewDisposeScope();
            var weights = Normalised(o);
            var sum = zeros(rowElements, ScalarType.Float64);
            for (int i = 0; i < o.Members.Count; i++)
            {
                var row = SurgeryTensorBytes.ToFloat32(SurgeryTensorBytes.Range(Source, t.Source, o.Members[i] * rowBytes, rowBytes),
                    info.DType, [rowElements], t.Source);
                sum.AddScaled_(row.to(ScalarType.Float64), weights[i]);
            }
            SurgeryTensorBytes.CopyAs(sum, info.DType, destination, t.Name);
        }
        writer.Write(t.Name, output);
    }

    // ---------------------------------------------------------------- fused [E, ...] tensors

    private void WriteFused(SurgeryTensor t, CancellationToken cancellationToken)
    {
        var info = Source.GetInfo(t.Source);
        var role = layout.Roles[t.Source];
        long slabBytes = info.ByteLength / Config.NumExperts;
        var slabShape = info.Shape[1..];
        var list = plan.Layers[t.Layer];
        using var output = empty(t.Shape, SurgeryTensorBytes.StorageType(info.DType));
        for (int k = 0; k < list.Count; k++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var o = list[k];
            using var slab = output.narrow(0, k, 1);
            var destination = slab.bytes;
            if (destination.Length != slabBytes)
                throw new InvalidOperationException($"tensor '{t.Name}': slab of {destination.Length} bytes, expected {slabBytes}");
            if (!o.Merged)
            {
                SurgeryTensorBytes.Range(Source, t.Source, o.Representative * slabBytes, slabBytes).CopyTo(destination);
                continue;
            }
            using var scope = NewDisposeScope();
            var values = role.IsBias
                ? MergedFusedBias(t, k, o, slabShape)
                : MergedFusedWeight(t, k, role, slabShape);
            SurgeryTensorBytes.CopyAs(values, info.DType, destination, t.Name);
        }
        writer.Write(t.Name, output);
        SurgeryTensorBytes.Release(Source, t.Source);
    }

    /// <summary>The slab [d1, d2] of a merged expert in a fused weight, in the stored orientation.</summary>
    private Tensor MergedFusedWeight(SurgeryTensor t, int k, TensorRoleInfo role, long[] slabShape)
    {
        if (slabShape.Length != 2 || role.QuantScale)
            throw Unmergeable(t, "is not a fused [experts, rows, cols] float weight");
        var slab = zeros(slabShape, ScalarType.Float32);
        long covered = 0, rows = -1;
        foreach (var q in Projections)
        {
            var r = Family.ExpertTensor(t.Layer, k, q, outConfig);
            if (r.TensorName != t.Name) continue;
            var view = r.Layout switch
            {
                ExpertLayout.Fused => slab,
                ExpertLayout.FusedTransposed => slab.t(),
                _ => throw Unmergeable(t, $"stores its experts as {r.Layout}; dequantize first"),
            };
            rows = view.shape[0];
            var target = SelectRows(view, r, t.Name);
            using var w = plan.Weights!.Weight(t.Layer, k, q);
            Place(target, w, t, k, q, "weight");
            covered += target.shape[0];
        }
        if (covered != rows || rows < 0)
            throw Unmergeable(t, $"has {(rows < 0 ? "no" : $"{covered} of {rows}")} rows covered by the {Family.Name} adapter's gate/up/down references");
        return slab;
    }

    /// <summary>The row [out] of a merged expert in a fused bias [E, out].</summary>
    private Tensor MergedFusedBias(SurgeryTensor t, int k, OutputExpert o, long[] slabShape)
    {
        if (slabShape.Length != 1) throw Unmergeable(t, "is not a fused [experts, out] bias");
        var bias = zeros(slabShape, ScalarType.Float32);
        long covered = 0;
        foreach (var q in Projections)
        {
            var r = Family.ExpertTensor(t.Layer, k, q, outConfig);
            if (r.BiasName != t.Name) continue;
            var target = SelectRows(bias, r, t.Name);
            using var b = plan.Weights!.Bias(t.Layer, k, q) ?? MemberBias(t.Layer, o, q);
            Place(target, b, t, k, q, "bias");
            covered += target.shape[0];
        }
        if (covered != bias.shape[0])
            throw Unmergeable(t, $"has {covered} of {bias.shape[0]} bias entries covered by the {Family.Name} adapter's gate/up/down references");
        return bias;
    }

    /// <summary>Σ_m w_m · bias_m of projection <paramref name="q"/> over the members (normalised weights).</summary>
    private Tensor MemberBias(int layer, OutputExpert o, ExpertProjection q)
    {
        using var scope = NewDisposeScope();
        var weights = Normalised(o);
        Tensor? sum = null;
        for (int i = 0; i < o.Members.Count; i++)
        {
            var b = ExpertWeights.LoadBias(Source, Family, Config, layer, o.Members[i], q)
                    ?? throw new MoeCompressException(ErrorKind.Internal, $"layer {layer}: the {Family.Name} adapter names no {q} bias for expert {o.Members[i]}");
            var term = b.to(ScalarType.Float64).Times(weights[i]);
            sum = sum is null ? term : sum.Plus(term);
        }
        return sum!.to(ScalarType.Float32).MoveToOuterDisposeScope();
    }

    // ---------------------------------------------------------------- per-expert tensors of merged experts

    private void WriteMergedExpertTensor(SurgeryTensor t)
    {
        using var scope = NewDisposeScope();
        var info = Source.GetInfo(t.Source);
        var role = layout.Roles[t.Source];
        var o = plan.Layers[t.Layer][t.OutputExpert];
        var projection = role.Projection!.Value;
        if (role.QuantScale || !SurgeryTensorBytes.IsPlainFloat(info.DType))
            throw Unmergeable(t, $"is {info.DType.ToHeaderName()}{(role.QuantScale ? " (a quantization scale)" : "")}; dequantize first");

        Tensor values;
        if (role.IsBias)
        {
            values = plan.Weights!.Bias(t.Layer, t.OutputExpert, projection) is { } b
                ? Checked(b, info.Shape, t, projection, "bias")
                : MemberAverage(t, o, projection, info);
        }
        else
        {
            var matrix = zeros(info.Shape, ScalarType.Float32);
            long covered = 0;
            foreach (var q in Projections)
            {
                var r = Family.ExpertTensor(t.Layer, o.Representative, q, Config);
                if (r.TensorName != t.Source) continue;
                if (r.Layout != ExpertLayout.PerExpert || info.Shape.Length != 2)
                    throw Unmergeable(t, $"is referenced as {r.Layout} [{string.Join(", ", info.Shape)}], not a per-expert matrix");
                var target = SelectRows(matrix, r, t.Source);
                using var w = plan.Weights!.Weight(t.Layer, t.OutputExpert, q);
                Place(target, w, t, t.OutputExpert, q, "weight");
                covered += target.shape[0];
            }
            if (covered == 0) values = MemberAverage(t, o, projection, info);
            else if (covered != info.Shape[0])
                throw Unmergeable(t, $"has {covered} of {info.Shape[0]} rows covered by the {Family.Name} adapter's gate/up/down references");
            else values = matrix;
        }
        var bytes = new byte[info.ByteLength];
        SurgeryTensorBytes.CopyAs(values, info.DType, bytes, t.Name);
        writer.Write(t.Name, bytes);
    }

    /// <summary>Σ_m w_m · T_m over the members' tensors of the same kind (biases and anything not a gate/up/down weight).</summary>
    private Tensor MemberAverage(SurgeryTensor t, OutputExpert o, ExpertProjection projection, TensorInfo info)
    {
        var weights = Normalised(o);
        var sum = zeros(info.Shape, ScalarType.Float64);
        for (int i = 0; i < o.Members.Count; i++)
        {
            var name = o.Members[i] == o.Representative ? t.Source
                : layout.RenameExpertTensor(t.Source, t.Layer, o.Representative, o.Members[i], projection, Config);
            var member = Source.GetInfo(name);
            if (member.DType != info.DType || !member.Shape.AsSpan().SequenceEqual(info.Shape))
                throw Unmergeable(t, $"cannot be averaged: member tensor '{name}' is {member.DType.ToHeaderName()} [{string.Join(", ", member.Shape)}]");
            sum.AddScaled_(SurgeryTensorBytes.ToFloat32(Source.GetBytes(name), member.DType, member.Shape, name).to(ScalarType.Float64), weights[i]);
        }
        return sum.to(ScalarType.Float32);
    }

    // ---------------------------------------------------------------- helpers

    /// <summary>The rows an <see cref="ExpertTensorRef"/> selects from dimension 0 (a view: writes go through).</summary>
    private static Tensor SelectRows(Tensor m, ExpertTensorRef r, string name)
    {
        long total = m.shape[0];
        long count = r.RowCount >= 0 ? r.RowCount : r.Interleaved ? (total - r.RowStart + 1) / 2 : total - r.RowStart;
        long step = r.Interleaved ? 2 : 1;
        if (r.RowStart < 0 || count < 1 || r.RowStart + (count - 1) * step >= total)
            throw new MoeCompressException(ErrorKind.InvalidCheckpoint,
                $"tensor '{name}' has {total} rows per expert; the adapter's reference (rows from {r.RowStart}, {count} of them, step {step}) does not fit");
        return r.Interleaved ? m.slice(0, r.RowStart, r.RowStart + (count - 1) * step + 1, step) : m.narrow(0, r.RowStart, count);
    }

    private static void Place(Tensor target, Tensor value, SurgeryTensor t, int k, ExpertProjection q, string what) =>
        target.copy_(Checked(value, target.shape, t, q, what, k));

    private static Tensor Checked(Tensor value, long[] shape, SurgeryTensor t, ExpertProjection q, string what, int? k = null)
    {
        if (!value.shape.AsSpan().SequenceEqual(shape))
            throw new MoeCompressException(ErrorKind.Internal,
                $"layer {t.Layer}, merged expert {k ?? t.OutputExpert}: the merged {q} {what} is [{string.Join(", ", value.shape)}] but '{t.Name}' needs [{string.Join(", ", shape)}]");
        return value.to(ScalarType.Float32);
    }

    private static double[] Normalised(OutputExpert o)
    {
        double sum = o.MemberWeights.Sum();
        return o.MemberWeights.Select(w => w / sum).ToArray();
    }

    private static MoeCompressException Unmergeable(SurgeryTensor t, string problem) =>
        new(ErrorKind.Infeasible, $"layer {t.Layer}: cannot write merged experts into '{t.Name}': it {problem}");
}
