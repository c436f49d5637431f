using System.Text.Json.Nodes;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Input;
using TorchSharp;

namespace MoECompress.Formats.Safetensors;

/// <summary>
/// The weights of a Hugging Face checkpoint: either a directory with <c>model.safetensors.index.json</c> and its
/// shards, or a single safetensors file (<c>model.safetensors</c>, or the only <c>*.safetensors</c> in the directory).
/// Every shard is opened (memory-mapped) and its header validated on <see cref="Open"/>; the index must agree with
/// the shards exactly.
/// </summary>
/// <remarks>
/// Validation of a sharded checkpoint, each failure a <see cref="CheckpointFormatException"/>:
/// the index is JSON with a <c>weight_map</c> object of relative file names; every shard it names exists (the error
/// names the index, the shard and a tensor mapped to it); no tensor is in two shards; every tensor of the index is in
/// the shard the index names; every tensor of every shard is in the index.
/// <para>
/// <c>metadata.total_size</c> that differs from the sum of tensor bytes is only a <see cref="Warnings">warning</see>:
/// transformers never reads it when loading, and files written by other tools often disagree (some count parameters,
/// some count the tied tensors twice), so refusing would reject checkpoints that load fine.
/// </para>
/// </remarks>
public sealed class SafetensorsCheckpoint : ITensorSource, IDisposable
{
    /// <summary>Name of a single-file checkpoint's weights as transformers writes them.</summary>
    public const string SingleFileName = "model.safetensors";

    private readonly SafetensorsFile[] _shards;
    private readonly Dictionary<string, SafetensorsFile> _fileOf;
    private readonly string[] _names;

    /// <summary>Full path of the checkpoint directory.</summary>
    public string Directory { get; }

    /// <summary>The index, or null for a single-file checkpoint.</summary>
    public SafetensorsIndex? Index { get; }

    /// <summary>Full path of the index file, or null for a single-file checkpoint.</summary>
    public string? IndexPath => Index?.Path;

    /// <summary>True when the weights are described by an index (even if it names only one shard).</summary>
    public bool IsSharded => Index is not null;

    /// <summary>The index's <c>metadata</c> object, or null (single file, or no metadata in the index).</summary>
    public JsonObject? IndexMetadata => Index?.Metadata;

    /// <summary>The weight files, sorted by file name.</summary>
    public IReadOnlyList<SafetensorsFile> ShardFiles => _shards;

    /// <summary>Tensor names: index order for a sharded checkpoint, header order for a single file.</summary>
    public IReadOnlyList<string> Names => _names;

    /// <summary>Sum of all tensor byte lengths over all shards.</summary>
    public long TotalTensorBytes { get; }

    /// <summary>Problems that do not prevent loading (see remarks); empty for a clean checkpoint.</summary>
    public IReadOnlyList<string> Warnings { get; }

    private SafetensorsCheckpoint(string directory, SafetensorsIndex? index, SafetensorsFile[] shards,
        Dictionary<string, SafetensorsFile> fileOf, string[] names, long totalBytes, List<string> warnings)
    {
        Directory = directory;
        Index = index;
        _shards = shards;
        _fileOf = fileOf;
        _names = names;
        TotalTensorBytes = totalBytes;
        Warnings = warnings;
    }

    /// <summary>
    /// Opens a checkpoint. <paramref name="directoryOrFile"/> is a directory (with an index, a <c>model.safetensors</c>,
    /// or exactly one <c>*.safetensors</c>), an index file, or a single safetensors file.
    /// </summary>
    /// <exception cref="CheckpointFormatException">Missing (<see cref="ErrorKind.Io"/>) or malformed input.</exception>
    public static SafetensorsCheckpoint Open(string directoryOrFile)
    {
        string full = System.IO.Path.GetFullPath(directoryOrFile);
        if (File.Exists(full))
        {
            string dir = System.IO.Path.GetDirectoryName(full)!;
            return full.EndsWith(".index.json", StringComparison.OrdinalIgnoreCase)
                ? OpenSharded(dir, SafetensorsIndex.Read(full))
                : OpenSingle(dir, full);
        }
        if (!System.IO.Directory.Exists(full))
            throw new CheckpointFormatException(full, null, null, "checkpoint directory or file not found", ErrorKind.Io);

        string indexPath = System.IO.Path.Combine(full, SafetensorsIndex.FileName);
        if (File.Exists(indexPath)) return OpenSharded(full, SafetensorsIndex.Read(indexPath));
        string single = System.IO.Path.Combine(full, SingleFileName);
        if (File.Exists(single)) return OpenSingle(full, single);

        var candidates = System.IO.Directory.GetFiles(full, "*.safetensors");
        Array.Sort(candidates, StringComparer.Ordinal);
        if (candidates.Length == 1) return OpenSingle(full, candidates[0]);
        if (candidates.Length == 0)
            throw new CheckpointFormatException(full, null, null,
                $"no {SafetensorsIndex.FileName}, {SingleFileName} or other .safetensors file in the directory");
        throw new CheckpointFormatException(full, null, null,
            $"{candidates.Length} .safetensors files but no {SafetensorsIndex.FileName} saying which tensor is where " +
            $"({System.IO.Path.GetFileName(candidates[0])}, {System.IO.Path.GetFileName(candidates[1])}, ...)");
    }

    private static SafetensorsCheckpoint OpenSingle(string directory, string file)
    {
        var f = SafetensorsFile.Open(file);
        var fileOf = new Dictionary<string, SafetensorsFile>(f.Tensors.Count, StringComparer.Ordinal);
        foreach (var n in f.Names) fileOf.Add(n, f);
        var names = new string[f.Names.Count];
        for (int i = 0; i < names.Length; i++) names[i] = f.Names[i];
        return new SafetensorsCheckpoint(directory, null, new[] { f }, fileOf, names, f.TotalTensorBytes, new List<string>());
    }

    private static SafetensorsCheckpoint OpenSharded(string directory, SafetensorsIndex index)
    {
        // Shards in order of file name; remember one tensor per shard for messages.
        var firstTensorOf = new Dictionary<string, string>(StringComparer.Ordinal);
        var countOf = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var name in index.TensorNames)
        {
            string shard = index.WeightMap[name];
            firstTensorOf.TryAdd(shard, name);
            countOf[shard] = countOf.GetValueOrDefault(shard) + 1;
        }
        var shardNames = new List<string>(firstTensorOf.Keys);
        shardNames.Sort(StringComparer.Ordinal);
        foreach (var shard in shardNames)
        {
            var kind = InputFile.KindOf(System.IO.Path.Combine(directory, shard));
            if (kind != InputFileKind.Regular)
            {
                int others = countOf[shard] - 1;
                throw new CheckpointFormatException(index.Path, firstTensorOf[shard], null,
                    $"index maps this tensor{(others > 0 ? $" and {others} other(s)" : "")} to shard '{shard}', " +
                    (kind == InputFileKind.Missing ? "but that file does not exist" : $"but that path {InputFile.Describe(kind)}"));
            }
        }

        var opened = new List<SafetensorsFile>(shardNames.Count);
        try
        {
            var byShardName = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
            foreach (var shard in shardNames)
            {
                var f = SafetensorsFile.Open(System.IO.Path.Combine(directory, shard));
                opened.Add(f);
                byShardName.Add(shard, f);
            }

            // A tensor in two shards.
            var foundIn = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
            foreach (var f in opened)
                foreach (var n in f.Names)
                    if (!foundIn.TryAdd(n, f))
                        throw new CheckpointFormatException(f.Path, n, f.FileOffsetOf(n),
                            $"tensor is present in two shards: '{System.IO.Path.GetFileName(foundIn[n].Path)}' and " +
                            $"'{System.IO.Path.GetFileName(f.Path)}'");

            // Every tensor of the index in the shard it names.
            foreach (var name in index.TensorNames)
            {
                string shard = index.WeightMap[name];
                if (byShardName[shard].Contains(name)) continue;
                string elsewhere = foundIn.TryGetValue(name, out var other)
                    ? $"; it is in '{System.IO.Path.GetFileName(other.Path)}'" : "; no shard has it";
                throw new CheckpointFormatException(index.Path, name, null,
                    $"index says the tensor is in shard '{shard}' but it is not{elsewhere}");
            }

            // Every tensor of every shard in the index.
            long total = 0;
            foreach (var f in opened)
            {
                foreach (var t in f.Tensors)
                {
                    if (!index.WeightMap.ContainsKey(t.Name))
                        throw new CheckpointFormatException(f.Path, t.Name, f.DataSectionOffset + t.DataBegin,
                            $"tensor is in this shard but missing from the index '{System.IO.Path.GetFileName(index.Path)}'");
                    total += t.ByteLength;
                }
            }

            var warnings = new List<string>(index.Warnings);
            if (index.TotalSize is { } declared && declared != total)
                warnings.Add($"{index.Path}: metadata.total_size is {declared} but the shards hold {total} tensor bytes " +
                             "(transformers ignores total_size; the checkpoint is usable)");

            var names = new string[index.TensorNames.Count];
            var fileOf = new Dictionary<string, SafetensorsFile>(names.Length, StringComparer.Ordinal);
            for (int i = 0; i < names.Length; i++)
            {
                names[i] = index.TensorNames[i];
                fileOf.Add(names[i], byShardName[index.WeightMap[names[i]]]);
            }
            return new SafetensorsCheckpoint(directory, index, opened.ToArray(), fileOf, names, total, warnings);
        }
        catch
        {
            foreach (var f in opened) f.Dispose();
            throw;
        }
    }

    /// <summary>The file that holds a tensor.</summary>
    /// <exception cref="CheckpointFormatException">No such tensor.</exception>
    public SafetensorsFile GetFile(string name) => _fileOf.TryGetValue(name, out var f) ? f
        : throw new CheckpointFormatException(IndexPath ?? _shards[0].Path, name, null, "no such tensor in the checkpoint");

    /// <summary>The file that holds a tensor, or false.</summary>
    public bool TryGetFile(string name, out SafetensorsFile file) => _fileOf.TryGetValue(name, out file!);

    /// <inheritdoc />
    public bool Contains(string name) => _fileOf.ContainsKey(name);

    /// <inheritdoc />
    public TensorInfo GetInfo(string name) => GetFile(name).GetInfo(name);

    /// <inheritdoc />
    public ReadOnlySpan<byte> GetBytes(string name) => GetFile(name).GetBytes(name);

    /// <inheritdoc />
    public torch.Tensor ToTensor(string name, torch.ScalarType? @as = null) => GetFile(name).ToTensor(name, @as);

    /// <summary>Closes every shard.</summary>
    public void Dispose()
    {
        foreach (var f in _shards) f.Dispose();
    }

    /// <inheritdoc />
    public override string ToString() =>
        $"{Directory} ({_names.Length} tensors in {_shards.Length} file(s), {TotalTensorBytes} bytes)";
}
