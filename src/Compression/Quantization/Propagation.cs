namespace MoECompress.Compression.Quantization;

/// <summary>Which activations feed layer l+1 while a sequential pass compresses layer l.</summary>
public enum Propagation
{
    /// <summary>The compressed layer's outputs (standard GPTQ practice: later layers calibrate on what they will see).</summary>
    Compressed,
    /// <summary>The original layer's outputs.</summary>
    Original,
}
