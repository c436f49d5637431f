using System.Diagnostics;
using MoECompress.Compression.Calibration;
using MoECompress.Compression.Data;
using MoECompress.Compression.Model;
using MoECompress.Formats.Families;

namespace MoECompress.Compression.Quantization;

/// <summary>
/// MC-MoE's per-expert quantization sensitivity: for every MoE layer, routed expert i and candidate width b,
/// ε_ib = Σ‖ΔY‖² / Σ‖Y‖² over the calibration tokens, where Y is the MoE block's output and ΔY its change when expert
/// i alone is quantized to b bits (with the user's method: RTN, or GPTQ from the profile's Hessians; experts that
/// calibration covered too thinly fall back to RTN and are listed). One streamed pass over the calibration tokens; each
/// expert's projections are quantized once per width.
/// </summary>
/// <remarks>
/// ΔY is measured on the tokens routed to expert i only, weighted by their gate weights: the router is never quantized,
/// so this equals re-running the block with the expert replaced (<see cref="MoEForwardOptions.ExpertReplacements"/>),
/// at 1/E of the compute. An expert that no calibration token selects has ε = 0 at every width.
/// </remarks>
public static class ExpertSensitivity
{
    /// <summary>Streams <paramref name="set"/> through the model and measures ε for every MoE layer (those of
    /// <paramref name="profile"/> when given), expert and candidate width.</summary>
    /// <param name="checkpoint">The model.</param>
    /// <param name="set">Calibration tokens (<see cref="CalibrationPass.LoadTokens(ModelCheckpoint, string?, CalibrationDataOptions, IProgress{string}?, CancellationToken)"/>).</param>
    /// <param name="profile">Calibration profile: Hessians and coverage for GPTQ (required with <see cref="QuantizeMethod.Gptq"/>).</param>
    /// <param name="options">Widths and quantization recipe.</param>
    /// <param name="progress">Receives one line per layer.</param>
    /// <param name="cancellationToken">Cancels between experts.</param>
    public static ExpertSensitivityResult Measure(ModelCheckpoint checkpoint, CalibrationSet set, CalibrationProfile? profile,
        ExpertSensitivityOptions options, IProgress<string>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        ArgumentNullException.ThrowIfNull(set);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (options.Recipe.Method == QuantizeMethod.Gptq && profile is null)
            throw new ArgumentException("GPTQ sensitivity needs the calibration profile's Hessians", nameof(profile));
        var sw = Stopwatch.StartNew();
        using var observer = new ExpertSensitivityObserver(profile, options, progress, cancellationToken);
        CalibrationPass.Run(checkpoint, set, observer, new StreamingOptions { MicroBatchTokens = options.MicroBatch }, progress, cancellationToken);
        return new ExpertSensitivityResult(observer.Candidates, observer.Errors, observer.Tokens, observer.Fallbacks.ToList(), sw.Elapsed.TotalSeconds);
    }
}
