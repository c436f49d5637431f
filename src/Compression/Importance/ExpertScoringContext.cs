using MoECompress.Compression.Calibration;
using MoECompress.Compression.Data;
using MoECompress.Compression.Model;
using MoECompress.Formats.Families;

namespace MoECompress.Compression.Importance;

/// <summary>What an <see cref="IExpertScorer"/> works on.</summary>
public sealed record ExpertScoringContext
{
    /// <summary>Calibration statistics of the model (always required).</summary>
    public required CalibrationProfile Profile { get; init; }

    /// <summary>The model the profile belongs to; required by scorers with <see cref="IExpertScorer.RequiresActivations"/>.</summary>
    public ModelCheckpoint? Checkpoint { get; init; }

    /// <summary>Calibration tokens to measure on; required by scorers with <see cref="IExpertScorer.RequiresActivations"/>.</summary>
    public CalibrationSet? Tokens { get; init; }

    /// <summary>Settings of the streamed forward pass (null: the defaults).</summary>
    public StreamingOptions? Streaming { get; init; }

    /// <summary>Receives one line per layer (and per streamed step) while a scorer runs the model.</summary>
    public IProgress<string>? Progress { get; init; }
}
