namespace MoECompress.Compression.Merging;

/// <summary>Which router row a merged expert gets (see <see cref="Surgery.RouterRowRule"/>).</summary>
public enum RouterRowChoice
{
    /// <summary>Measure both rules on calibration tokens and keep, per layer, the one with the smaller MoE-block output error.</summary>
    Auto,
    /// <summary>The row of the cluster's most frequently selected member.</summary>
    Representative,
    /// <summary>The frequency-weighted average of the members' rows.</summary>
    Weighted,
}
