using static TorchSharp.torch;

namespace MoECompress.Compression.Quantization;

/// <summary>How far a quantized matrix is from the original.</summary>
public static class QuantizationError
{
    /// <summary>‖W − Ŵ‖_F / ‖W‖_F (0 when W is all zeros and Ŵ equals it).</summary>
    public static double Relative(Tensor w, QuantizedMatrix q)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var w32 = w.to(ScalarType.Float64);
        var diff = (w32 - q.Dequantize().to(ScalarType.Float64)).norm().item<double>();
        var norm = w32.norm().item<double>();
        return norm == 0 ? diff : diff / norm;
    }

    /// <summary>
    /// Relative output error over calibration inputs whose Σ x xᵀ is <paramref name="hessianSum"/> [in, in]:
    /// sqrt(tr(ΔW H ΔWᵀ) / tr(W H Wᵀ)) with ΔW = W − Ŵ, i.e. ‖X Wᵀ − X Ŵᵀ‖_F / ‖X Wᵀ‖_F without the inputs themselves.
    /// </summary>
    public static double RelativeOutput(Tensor w, QuantizedMatrix q, Tensor hessianSum)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var w64 = w.to(ScalarType.Float64);
        var h = hessianSum.to(ScalarType.Float64);
        var delta = w64 - q.Dequantize().to(ScalarType.Float64);
        double num = (delta.matmul(h) * delta).sum().item<double>();
        double den = (w64.matmul(h) * w64).sum().item<double>();
        return den <= 0 ? Math.Sqrt(Math.Max(num, 0)) : Math.Sqrt(Math.Max(num, 0) / den);
    }
}
