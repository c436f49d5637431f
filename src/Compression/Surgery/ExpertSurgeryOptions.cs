using System.Text.Json.Nodes;

namespace MoECompress.Compression.Surgery;

/// <summary>How <see cref="ExpertSurgery.Write"/> writes its output checkpoint.</summary>
public sealed record ExpertSurgeryOptions
{
    /// <summary>Replace an existing output directory (it is moved aside and deleted only after the new one is in place).</summary>
    public bool Overwrite { get; init; }

    /// <summary>Most tensor bytes per output shard (transformers' default "5GB"); more shards get an index.json.</summary>
    public long MaxShardBytes { get; init; } = 5_000_000_000;

    /// <summary>
    /// Extra top-level manifest properties (for example the command's scores or the calibration profile's hash), merged
    /// into <c>moe-compress-manifest.json</c> after the surgery's own <c>operation</c> and <c>expert_map</c>. A property
    /// named <c>options</c> is recorded as the manifest's standard options block; the other standard names (tool,
    /// tool_version, created_utc, tensor_count, total_tensor_bytes, shards, files) are refused.
    /// </summary>
    public JsonObject? ManifestProperties { get; init; }

    /// <summary>fsync the output before the final rename (on by default; see CheckpointWriterOptions.FlushToDisk).</summary>
    public bool FlushToDisk { get; init; } = true;
}
