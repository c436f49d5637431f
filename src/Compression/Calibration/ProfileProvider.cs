using MoECompress.Compression.Model;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;

namespace MoECompress.Compression.Calibration;

/// <summary>
/// Gives a compression step its calibration profile: loads a saved one (checked against the model) or collects one in
/// memory with the same collector <c>calibrate</c> uses.
/// </summary>
public static class ProfileProvider
{
    /// <summary>
    /// Loads <see cref="ProfileRequest.Profile"/> (and checks it was made for this model's MoE shape), or streams the
    /// calibration data through the model and builds a profile without writing it.
    /// </summary>
    /// <exception cref="MoeCompressException">The profile is missing, unreadable or belongs to another model; data problems.</exception>
    public static CalibrationProfile LoadOrCollect(ModelCheckpoint checkpoint, ProfileRequest request,
        IProgress<string>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        ArgumentNullException.ThrowIfNull(request);
        if (request.Loaded is { } loadedProfile)
        {
            loadedProfile.EnsureMatches(checkpoint.MoE);
            return loadedProfile;
        }
        if (request.Profile is not null)
        {
            if (!File.Exists(request.Profile) && !Directory.Exists(request.Profile))
                throw new MoeCompressException(ErrorKind.Usage, $"{Path.GetFullPath(request.Profile)}: calibration profile not found");
            progress?.Report($"loading profile {request.Profile}");
            var loaded = CalibrationProfile.Load(request.Profile);
            loaded.EnsureMatches(checkpoint.MoE, request.Profile);
            return loaded;
        }
        if (request.SeqLen < 1) throw new MoeCompressException(ErrorKind.Usage, $"--seq-len {request.SeqLen} must be at least 1");
        if (request.Samples is < 0) throw new MoeCompressException(ErrorKind.Usage, $"--samples {request.Samples} must not be negative (0 = every window)");
        if (checkpoint.MoE.NumMoELayers == 0)
            throw new MoeCompressException(ErrorKind.Infeasible, $"{checkpoint.ConfigPath}: the model has no MoE layer to calibrate");
        ModelEngine.EnsureSupported(checkpoint.Family, checkpoint.Config);

        var set = request.LoadTokens(checkpoint, progress, cancellationToken);
        progress?.Report($"calibration pass over {checkpoint.Directory}: {set.Count} x {set.SeqLen} = {(long)set.Count * set.SeqLen:N0} tokens");
        var options = new CalibrationCollectorOptions();
        options.Validate();
        using var collector = new CalibrationCollector(options);
        CalibrationPass.Run(checkpoint, set, collector, new StreamingOptions { MicroBatchTokens = request.MicroBatch }, progress, cancellationToken);
        return Build(checkpoint, set, collector);
    }

    /// <summary>The profile of <paramref name="checkpoint"/> from a collector that observed <paramref name="set"/>
    /// streamed through it (by a calibration pass, or alongside another pass such as quantization's sensitivity pass).</summary>
    public static CalibrationProfile Build(ModelCheckpoint checkpoint, Data.CalibrationSet set, CalibrationCollector collector)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        ArgumentNullException.ThrowIfNull(set);
        ArgumentNullException.ThrowIfNull(collector);
        var model = CalibrationModelInfo.From(checkpoint.MoE, checkpoint.Directory, Calibrator.Sha256Hex(checkpoint.ConfigPath), set.Provenance.TokenizerName);
        return collector.Build(model, CalibrationDataInfo.From(set));
    }
}
