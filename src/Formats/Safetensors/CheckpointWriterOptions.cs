using System.Text.Json.Nodes;

namespace MoECompress.Formats.Safetensors;

/// <summary>How a <see cref="CheckpointWriter"/> lays out and finishes a checkpoint.</summary>
public sealed record CheckpointWriterOptions
{
    /// <summary>
    /// Most tensor bytes per shard (transformers' default "5GB"). Tensors are packed in plan order; a tensor larger than
    /// the cap gets a shard of its own. Ignored when <see cref="Layout"/> is given.
    /// </summary>
    public long MaxShardBytes { get; init; } = 5_000_000_000;

    /// <summary>
    /// Each shard's <c>__metadata__</c>. Null means <c>{"format":"pt"}</c>. A <c>format</c> entry of <c>pt</c> is
    /// added when the map lacks one, because transformers refuses safetensors files whose metadata has no format.
    /// </summary>
    public IReadOnlyDictionary<string, string>? Metadata { get; init; }

    /// <summary>Version recorded in the manifest (defaults to the library's version).</summary>
    public string ToolVersion { get; init; } = DefaultToolVersion;

    /// <summary>The command's options, recorded verbatim (deep-copied) in the manifest under <c>options</c>.</summary>
    public JsonObject? ManifestOptions { get; init; }

    /// <summary>Replace an existing destination (it is moved aside and deleted only after the new one is in place).</summary>
    public bool Overwrite { get; init; }

    /// <summary>
    /// fsync every file and directory before the final rename, so a crash never leaves a half-written checkpoint under
    /// the destination name. On by default; turning it off is faster on slow disks (the OS still writes the data
    /// back later) and is what a plain <c>cp -r</c> does.
    /// </summary>
    public bool FlushToDisk { get; init; } = true;

    /// <summary>
    /// Explicit shard files and their tensors (for example an input checkpoint's layout, to rewrite it unchanged).
    /// Must cover the plan exactly. Null: pack by <see cref="MaxShardBytes"/> and name shards the transformers way.
    /// </summary>
    public IReadOnlyList<ShardLayout>? Layout { get; init; }

    /// <summary>
    /// Write <c>model.safetensors.index.json</c>: null = only when there is more than one shard (as transformers does);
    /// true = always (a one-shard checkpoint is then named <c>model-00001-of-00001.safetensors</c>); false = never
    /// (only allowed with one shard).
    /// </summary>
    public bool? WriteIndex { get; init; }

    /// <summary>
    /// Record each shard's SHA-256 in the manifest (on by default). Hashing is the main CPU cost of a rewrite (about
    /// 0.7–0.8 CPU-seconds per GB with SHA-NI, on background threads while the data is written); off, the manifest
    /// lists shard sizes only. Other files are always hashed (they are small).
    /// </summary>
    public bool HashShards { get; init; } = true;

    /// <summary>
    /// Write into a folder with a fixed name (<c>.&lt;name&gt;.partial</c> beside the destination) that survives a crash,
    /// Ctrl+C or a failed run, so that the run can continue later (<see cref="Resume"/>); the caller records progress with
    /// <see cref="CheckpointWriter.SaveProgress"/>. Without <see cref="Resume"/>, a leftover partial folder is an error
    /// naming it, never silently reused.
    /// </summary>
    public bool Resumable { get; init; }

    /// <summary>With <see cref="Resumable"/>: continue a leftover partial folder of the same plan (tensors recorded by its
    /// last <see cref="CheckpointWriter.SaveProgress"/> count as written); start a new one when there is none.</summary>
    public bool Resume { get; init; }

    internal static string DefaultToolVersion =>
        typeof(CheckpointWriterOptions).Assembly.GetName().Version?.ToString(3) ?? "0.0.0";
}
