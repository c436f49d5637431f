namespace MoECompress.Compression.Reporting;

/// <summary>
/// Structured progress of a library call: which stage runs, where it is (layer, items done of a total) and a plain
/// message. Library calls that take an <see cref="IProgress{T}"/> of <see cref="string"/> report these through
/// <see cref="ProgressUpdateExtensions.ReportUpdate"/>: a sink that also implements
/// <c>IProgress&lt;ProgressUpdate&gt;</c> (the CLI's progress bars) receives the record, any other sink the message.
/// </summary>
/// <param name="Stage">Short name of the stage ("calibrate", "evaluate", "score", "prune", ...).</param>
/// <param name="Message">The same progress in words, for plain-text sinks.</param>
public sealed record ProgressUpdate(string Stage, string Message)
{
    /// <summary>1-based position of this stage in a run of several stages (the demo's steps); null inside a stage.</summary>
    public int? Step { get; init; }
    /// <summary>Number of stages of the run when <see cref="Step"/> is given.</summary>
    public int? Steps { get; init; }
    /// <summary>0-based decoder layer being processed, if any.</summary>
    public int? Layer { get; init; }
    /// <summary>Decoder layers of the model, if known.</summary>
    public int? NumLayers { get; init; }
    /// <summary>Units of work done in this stage.</summary>
    public long? Done { get; init; }
    /// <summary>Units of work of the whole stage.</summary>
    public long? Total { get; init; }
    /// <summary>What <see cref="Done"/> counts ("tokens", "windows", "sequences", "layers").</summary>
    public string? Unit { get; init; }

    /// <summary>Share of the stage done, in [0, 1], when <see cref="Done"/> and <see cref="Total"/> are known.</summary>
    public double? Fraction => Done is long d && Total is long t && t > 0 ? Math.Clamp((double)d / t, 0, 1) : null;

    /// <inheritdoc/>
    public override string ToString() => Message;
}
