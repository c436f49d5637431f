namespace MoECompress.Compression.Quantization;

/// <summary>How routed experts' weights are rounded to their width.</summary>
public enum QuantizeMethod
{
    /// <summary>Round to nearest per group (no calibration data needed).</summary>
    Rtn,
    /// <summary>GPTQ with each expert's input Hessian from the calibration profile (RTN for experts without enough tokens).</summary>
    Gptq,
}
