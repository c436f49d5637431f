namespace MoECompress.Compression.Pipeline;

/// <summary>
/// One step of a <see cref="CompressionRecipe"/>: <see cref="PruneStep"/>, <see cref="MergeStep"/> or
/// <see cref="QuantizeStep"/>. Each holds the options of the command of the same name, without the model, output and
/// calibration data, which the <see cref="CompressionPipeline"/> supplies.
/// </summary>
public abstract record CompressionStep
{
    /// <summary>The step's name in recipes and reports ("prune", "merge", "quantize").</summary>
    public abstract string Kind { get; }

    /// <summary>True when the step changes which routed experts exist (so later steps need statistics re-derived).</summary>
    public abstract bool ChangesExperts { get; }
}
