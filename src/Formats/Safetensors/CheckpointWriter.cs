using System.IO.MemoryMappedFiles;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.Win32.SafeHandles;
using MoECompress.Formats.Errors;
using TorchSharp;

namespace MoECompress.Formats.Safetensors;

/// <summary>
/// Writes a safetensors checkpoint in two steps: <see cref="Create"/> plans every shard from a list of
/// <see cref="TensorSpec"/>s (names, offsets, headers) and preallocates the shard files in a temporary folder beside
/// the destination; the caller then <see cref="Write(string, ReadOnlySpan{byte})">writes</see> each planned tensor
/// exactly once, in any order and from any thread; <see cref="Commit"/> writes the index and the manifest, flushes,
/// and renames the folder into place. Disposing without a commit deletes the temporary folder: a destination is
/// either complete or absent. A writer that is killed leaves its temporary folder and its lock file
/// (<c>.NAME.tmp-XXXXXXXX</c>, <c>.NAME.tmp-XXXXXXXX.lock</c>); the next writer for the same destination deletes
/// them once no running process holds the lock (see <see cref="TemporaryFolderLock"/>).
/// </summary>
/// <remarks>
/// <para>Shard files are named as transformers names them: <c>model.safetensors</c> for a single shard (no index),
/// otherwise <c>model-00001-of-0000N.safetensors</c> plus <c>model.safetensors.index.json</c> (weight_map sorted by
/// name, <c>metadata.total_size</c> = sum of tensor bytes). Headers are byte-for-byte what the reference Rust writer
/// produces for the same tensors in the same order, padded with spaces so every data section starts 8-byte aligned.</para>
/// <para>Data goes straight to its final position with positional writes (no buffering, no second copy):
/// <see cref="CopyTensorFrom(string, SafetensorsFile, string?, CancellationToken)"/> copies inside the kernel on Linux
/// (<c>copy_file_range</c>) and otherwise writes from the source's memory map.</para>
/// <para>SHA-256 of each shard (for the manifest) is computed by background threads while the caller writes: they
/// hash the prefix of each shard that is already complete, straight from a read-only map of the output file (the
/// page cache; no copy, and the pages are released after hashing). When tensors arrive
/// in file order the hashes are ready when the last tensor is written; tensors written out of order leave a gap that
/// stalls that shard's hash until it is filled, and whatever is left is hashed (by all threads, the committing one
/// included) in <see cref="Commit"/>. <see cref="CheckpointWriterOptions.HashShards"/> turns this off.</para>
/// <para>Memory: no large managed buffers; the resident size stays in the tens of megabytes however large the
/// checkpoint (mapped pages are released as soon as they are copied or hashed).</para>
/// </remarks>
public sealed unsafe class CheckpointWriter : IDisposable
{
    private const int ChunkBytes = 16 << 20;
    private const long HashSliceBytes = 64L << 20;
    private const long WritebackBytes = 64L << 20;

    private static readonly string[] WeightExtensions =
    {
        ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf", ".onnx", ".onnx_data", ".npz",
        ".pdparams", ".ot",
    };

    private sealed class ShardState
    {
        public required PlannedShard Plan;
        public required string TempPath;
        public required long[] TensorEnds; // file offset of the end of each tensor, data order
        public required bool[] Done;
        public SafeFileHandle? Handle;
        public MemoryMappedFile? Map;           // read-only view of the output, for hashing
        public MemoryMappedViewAccessor? View;
        public byte* Base;
        public int NextIndex;       // first tensor (data order) not completely written
        public long ContiguousEnd;  // bytes [0, ContiguousEnd) are written
        public long HashedTo;
        public long WritebackFrom;  // writeback started for [0, WritebackFrom)
        public bool Hashing;
        public IncrementalHash Sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        public byte[]? Digest;
    }

    private sealed class Slot
    {
        public required TensorSpec Spec;
        public required ShardState Shard;
        public required int Index;     // position in the shard (data order)
        public required long FileOffset;
        public long Length => Shard.Plan.Tensors[Index].ByteLength;
        public int State;              // 0 = not written, 1 = being written, 2 = written
    }

    private readonly object _lock = new();
    private readonly CheckpointWriterOptions _options;
    private readonly ShardState[] _shards;
    private readonly Dictionary<string, Slot> _slots;
    private readonly List<string> _extraFiles = new();
    private readonly JsonObject _manifestExtra = new();
    private readonly PlannedShard[] _plannedShards;
    private Thread[] _hashThreads = Array.Empty<Thread>();
    private Exception? _hashError;
    private bool _stopHashing, _committing, _committed, _disposed, _faulted, _commitAttempted;
    private long _writtenBytes;
    private int _pendingTensors;
    private readonly TemporaryFolderLock _folderLock;

    /// <summary>Name of the progress journal inside a resumable temporary folder.</summary>
    public const string JournalFileName = ".moe-compress-journal.json";
    /// <summary>Sub-folder of a resumable temporary folder for the caller's scratch files (deleted by <see cref="Commit"/>).</summary>
    public const string ScratchFolderName = ".moe-compress-resume";

    private JsonObject? _resumedState;
    private string? _planHash;
    private bool _progressSaved;

    /// <summary>Full path of the checkpoint directory that <see cref="Commit"/> creates.</summary>
    public string Destination { get; }

    /// <summary>The temporary folder the files are written to (<c>.&lt;name&gt;.tmp-&lt;random&gt;</c> beside the destination).</summary>
    public string TemporaryDirectory { get; }

    /// <summary>The planned shard files, in order.</summary>
    public IReadOnlyList<PlannedShard> Shards => _plannedShards;

    /// <summary>True when <see cref="Commit"/> writes <c>model.safetensors.index.json</c>.</summary>
    public bool WritesIndex { get; }

    /// <summary>Number of planned tensors.</summary>
    public int TensorCount => _slots.Count;

    /// <summary>Sum of all planned tensor bytes.</summary>
    public long TotalTensorBytes { get; }

    /// <summary>Tensor bytes written so far (for progress).</summary>
    public long WrittenTensorBytes => Interlocked.Read(ref _writtenBytes);

    /// <summary>True when this writer continues a partial folder left by an earlier run.</summary>
    public bool Resumed => _resumedState is not null;

    /// <summary>The caller's state saved with the last <see cref="SaveProgress"/> of the run being resumed, or null.</summary>
    public JsonObject? ResumedState => _resumedState;

    /// <summary>Folder for the caller's resume scratch files (e.g. activations at a layer boundary); created on demand,
    /// deleted by <see cref="Commit"/>. Only for <see cref="CheckpointWriterOptions.Resumable"/> writers.</summary>
    public string ScratchDirectory
    {
        get
        {
            if (!_options.Resumable) throw new InvalidOperationException("only a resumable writer has a scratch folder");
            var dir = Path.Combine(TemporaryDirectory, ScratchFolderName);
            Directory.CreateDirectory(dir);
            return dir;
        }
    }

    /// <summary>True when tensor <paramref name="name"/> is completely written (in this run or a resumed one).</summary>
    public bool IsWritten(string name)
    {
        var slot = GetSlot(name);
        lock (_lock) return slot.State == 2;
    }

    /// <summary>
    /// Makes every tensor written so far durable (fsync) and records them, with <paramref name="state"/>, in the journal
    /// of a resumable folder (written to a temporary name and renamed, so a crash leaves the previous journal or this
    /// one). A resumed run treats exactly these tensors as written and gets <paramref name="state"/> back.
    /// </summary>
    public void SaveProgress(JsonObject? state = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!_options.Resumable) throw new InvalidOperationException("SaveProgress needs a resumable writer (CheckpointWriterOptions.Resumable)");
        var written = new JsonArray();
        lock (_lock)
            foreach (var s in _slots.Values.Where(s => s.State == 2).Select(s => s.Spec.Name).Order(StringComparer.Ordinal))
                written.Add(s);
        foreach (var shard in _shards) RandomAccess.FlushToDisk(shard.Handle!);
        var journal = new JsonObject
        {
            ["plan_sha256"] = _planHash,
            ["written"] = written,
            ["state"] = state?.DeepClone(),
        };
        var path = Path.Combine(TemporaryDirectory, JournalFileName);
        var temp = path + ".new";
        WriteDurable(temp, Encoding.UTF8.GetBytes(journal.ToJsonString()));
        File.Move(temp, path, overwrite: true);
        NativeFileOps.TrySyncDirectory(TemporaryDirectory);
        _progressSaved = true;
    }

    private CheckpointWriter(string destination, string tempDir, TemporaryFolderLock folderLock, CheckpointWriterOptions options,
        ShardState[] shards, Dictionary<string, Slot> slots, bool writesIndex, long totalBytes)
    {
        Destination = destination;
        TemporaryDirectory = tempDir;
        _folderLock = folderLock;
        _options = options;
        _shards = shards;
        _slots = slots;
        WritesIndex = writesIndex;
        TotalTensorBytes = totalBytes;
        _pendingTensors = slots.Count;
        _plannedShards = new PlannedShard[shards.Length];
        for (int i = 0; i < shards.Length; i++) _plannedShards[i] = shards[i].Plan;
    }

    /// <summary>
    /// Validates the plan, assigns tensors to shards, creates the temporary folder, preallocates the shard files and
    /// writes their headers.
    /// </summary>
    /// <param name="destinationDir">Checkpoint directory to create. Its parent is created if missing.</param>
    /// <param name="plan">Every tensor to write, in the order they should be laid out.</param>
    /// <param name="options">Layout and commit options; null for defaults.</param>
    /// <exception cref="MoeCompressException"><see cref="ErrorKind.Io"/>: the destination exists (without
    /// <see cref="CheckpointWriterOptions.Overwrite"/>) or the files cannot be created (disk full, permissions).</exception>
    /// <exception cref="ArgumentException">The plan or layout is invalid (duplicate or empty names, negative dimensions,
    /// a layout that does not cover the plan).</exception>
    public static CheckpointWriter Create(string destinationDir, IReadOnlyList<TensorSpec> plan,
        CheckpointWriterOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(plan);
        options ??= new CheckpointWriterOptions();
        string destination = Path.TrimEndingDirectorySeparator(Path.GetFullPath(destinationDir));
        if (!options.Overwrite && (Directory.Exists(destination) || File.Exists(destination)))
            throw new MoeCompressException(ErrorKind.Io,
                $"{destination}: destination already exists (choose another path or allow overwriting)");

        var specs = ValidatePlan(plan);
        var (layouts, writesIndex) = AssignShards(plan, specs, options);

        string parent = Path.GetDirectoryName(destination)
                        ?? throw new ArgumentException("destination cannot be a file-system root", nameof(destinationDir));
        string tempDir = options.Resumable
            ? PartialDirectory(destination)
            : Path.Combine(parent, $".{Path.GetFileName(destination)}.tmp-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4))}");
        string planHash = PlanHash(plan, options);
        JsonObject? resumedState = null;
        HashSet<string>? resumedNames = null;
        if (options.Resumable && Directory.Exists(tempDir))
        {
            if (!options.Resume)
                throw new MoeCompressException(ErrorKind.Io,
                    $"{tempDir}: partial output of an interrupted run is in the way; add --resume to continue it, or delete that folder");
            (resumedNames, resumedState) = ReadJournal(tempDir, planHash);
        }
        TemporaryFolderLock? folderLock = null;
        try
        {
            Directory.CreateDirectory(parent);
            // Leftovers of writers that were killed before they could clean up (see TemporaryFolderLock).
            TemporaryFolderLock.CleanStale(parent, Path.GetFileName(destination));
            folderLock = options.Resumable ? TemporaryFolderLock.AcquireOrTakeOver(tempDir) : TemporaryFolderLock.Acquire(tempDir);
            Directory.CreateDirectory(tempDir);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            folderLock?.Dispose();
            throw new MoeCompressException(ErrorKind.Io, $"{tempDir}: cannot create the temporary folder: {SafetensorsFile.OneLine(e.Message)}", e);
        }

        var shards = new ShardState[layouts.Count];
        var slots = new Dictionary<string, Slot>(plan.Count, StringComparer.Ordinal);
        long total = 0;
        for (int s = 0; s < layouts.Count; s++)
        {
            var (fileName, names, metadata) = layouts[s];
            var infos = new TensorInfo[names.Count];
            long offset = 0;
            for (int i = 0; i < names.Count; i++)
            {
                var spec = specs[names[i]];
                long length = spec.ByteLength;
                infos[i] = new TensorInfo(spec.Name, spec.DType, (long[])spec.Shape.Clone(), offset, offset + length);
                offset += length;
            }
            var planned = new PlannedShard(fileName, infos, metadata, SafetensorsHeader.Encode(infos, metadata));
            var ends = new long[infos.Length];
            for (int i = 0; i < infos.Length; i++) ends[i] = planned.DataSectionOffset + infos[i].DataEnd;
            var state = new ShardState
            {
                Plan = planned, TempPath = Path.Combine(tempDir, fileName), TensorEnds = ends, Done = new bool[infos.Length],
            };
            shards[s] = state;
            for (int i = 0; i < infos.Length; i++)
            {
                slots.Add(infos[i].Name, new Slot
                {
                    Spec = specs[infos[i].Name], Shard = state, Index = i,
                    FileOffset = planned.DataSectionOffset + infos[i].DataBegin,
                });
            }
            total += planned.TensorBytes;
        }

        var writer = new CheckpointWriter(destination, tempDir, folderLock, options, shards, slots, writesIndex, total) { _planHash = planHash };
        try
        {
            if (resumedNames is not null)
            {
                writer._resumedState = resumedState ?? new JsonObject();
                writer.ReopenPartial(resumedNames);
            }
            else foreach (var shard in shards) writer.CreateShardFile(shard);
            if (options.HashShards) writer.StartHashing();
            return writer;
        }
        catch
        {
            writer.Dispose();
            throw;
        }
    }

    private static Dictionary<string, TensorSpec> ValidatePlan(IReadOnlyList<TensorSpec> plan)
    {
        var specs = new Dictionary<string, TensorSpec>(plan.Count, StringComparer.Ordinal);
        for (int i = 0; i < plan.Count; i++)
        {
            var spec = plan[i] ?? throw new ArgumentException($"plan entry {i} is null", nameof(plan));
            if (string.IsNullOrEmpty(spec.Name))
                throw new ArgumentException($"plan entry {i} has an empty tensor name", nameof(plan));
            if (spec.Name == SafetensorsHeader.MetadataKey)
                throw new ArgumentException($"'{SafetensorsHeader.MetadataKey}' is reserved and cannot name a tensor", nameof(plan));
            if (!Enum.IsDefined(spec.DType))
                throw new ArgumentException($"tensor '{spec.Name}' has an invalid dtype {(int)spec.DType}", nameof(plan));
            if (spec.Shape is null)
                throw new ArgumentException($"tensor '{spec.Name}' has no shape (use an empty array for a scalar)", nameof(plan));
            foreach (var d in spec.Shape)
                if (d < 0)
                    throw new ArgumentException($"tensor '{spec.Name}' has a negative dimension in shape [{string.Join(", ", spec.Shape)}]", nameof(plan));
            try { _ = spec.ByteLength; }
            catch (OverflowException)
            {
                throw new ArgumentException($"tensor '{spec.Name}' shape [{string.Join(", ", spec.Shape)}] overflows a 64-bit byte count", nameof(plan));
            }
            if (!specs.TryAdd(spec.Name, spec))
                throw new ArgumentException($"tensor '{spec.Name}' appears twice in the plan", nameof(plan));
        }
        return specs;
    }

    private static (List<(string File, IReadOnlyList<string> Names, IReadOnlyDictionary<string, string> Metadata)>, bool)
        AssignShards(IReadOnlyList<TensorSpec> plan, Dictionary<string, TensorSpec> specs, CheckpointWriterOptions options)
    {
        var defaultMetadata = WithFormat(options.Metadata);
        var result = new List<(string, IReadOnlyList<string>, IReadOnlyDictionary<string, string>)>();
        if (options.Layout is { } layout)
        {
            if (layout.Count == 0) throw new ArgumentException("the explicit shard layout is empty", nameof(options));
            var placed = new HashSet<string>(StringComparer.Ordinal);
            var files = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
            foreach (var shard in layout)
            {
                if (!SafetensorsIndex.IsSafeRelativeFileName(shard.FileName) || shard.FileName.Contains('/') ||
                    shard.FileName.Contains('\\') || !shard.FileName.EndsWith(".safetensors", StringComparison.Ordinal))
                    throw new ArgumentException($"shard file name '{shard.FileName}' must be a plain *.safetensors file name", nameof(options));
                if (!files.Add(shard.FileName))
                    throw new ArgumentException($"shard file name '{shard.FileName}' appears twice in the layout", nameof(options));
                foreach (var n in shard.TensorNames)
                {
                    if (!specs.ContainsKey(n))
                        throw new ArgumentException($"layout shard '{shard.FileName}' lists tensor '{n}', which is not in the plan", nameof(options));
                    if (!placed.Add(n))
                        throw new ArgumentException($"layout lists tensor '{n}' in more than one place", nameof(options));
                }
                result.Add((shard.FileName, shard.TensorNames, shard.Metadata ?? defaultMetadata));
            }
            foreach (var spec in plan)
                if (!placed.Contains(spec.Name))
                    throw new ArgumentException($"tensor '{spec.Name}' of the plan is in no shard of the layout", nameof(options));
            bool index = options.WriteIndex ?? layout.Count > 1;
            if (!index && layout.Count > 1)
                throw new ArgumentException("a checkpoint with several shards needs an index (WriteIndex = false)", nameof(options));
            return (result, index);
        }

        if (options.MaxShardBytes <= 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.MaxShardBytes, "MaxShardBytes must be positive");
        var groups = new List<List<string>>();
        var current = new List<string>();
        long currentBytes = 0;
        foreach (var spec in plan)
        {
            long size = spec.ByteLength;
            if (current.Count > 0 && currentBytes + size > options.MaxShardBytes)
            {
                groups.Add(current);
                current = new List<string>();
                currentBytes = 0;
            }
            current.Add(spec.Name);
            currentBytes += size;
        }
        if (current.Count > 0 || groups.Count == 0) groups.Add(current);

        bool writeIndex = options.WriteIndex ?? groups.Count > 1;
        if (!writeIndex && groups.Count > 1)
            throw new ArgumentException(
                $"the plan needs {groups.Count} shards under MaxShardBytes = {options.MaxShardBytes}, which needs an index (WriteIndex = false)",
                nameof(options));
        for (int i = 0; i < groups.Count; i++)
        {
            string name = writeIndex ? $"model-{i + 1:D5}-of-{groups.Count:D5}.safetensors" : SafetensorsCheckpoint.SingleFileName;
            result.Add((name, groups[i], defaultMetadata));
        }
        return (result, writeIndex);
    }

    private static IReadOnlyDictionary<string, string> WithFormat(IReadOnlyDictionary<string, string>? metadata)
    {
        var m = new Dictionary<string, string>(StringComparer.Ordinal);
        if (metadata is null || !metadata.ContainsKey("format")) m["format"] = "pt";
        if (metadata is not null)
            foreach (var kv in metadata) m[kv.Key] = kv.Value;
        return m;
    }

    /// <summary>The fixed temporary folder of a resumable write to <paramref name="destination"/>.</summary>
    public static string PartialDirectory(string destination)
    {
        var full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(destination));
        return Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.partial");
    }

    /// <summary>SHA-256 over the planned tensors (names, dtypes, shapes, order) and the shard layout options: a partial
    /// folder is only continued by a run that plans exactly the same files.</summary>
    private static string PlanHash(IReadOnlyList<TensorSpec> plan, CheckpointWriterOptions options)
    {
        var sb = new StringBuilder();
        foreach (var t in plan) sb.Append(t.Name).Append('|').Append(t.DType.ToHeaderName()).Append('|').AppendJoin(',', t.Shape).Append('\n');
        sb.Append(options.MaxShardBytes).Append('|').Append(options.WriteIndex).Append('|');
        if (options.Layout is { } layout)
            foreach (var shard in layout) sb.Append(shard.FileName).Append(':').AppendJoin(',', shard.TensorNames).Append(';');
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(sb.ToString())));
    }

    private static (HashSet<string> Written, JsonObject? State) ReadJournal(string tempDir, string planHash)
    {
        var path = Path.Combine(tempDir, JournalFileName);
        if (!File.Exists(path))
            throw new MoeCompressException(ErrorKind.Io,
                $"{tempDir}: partial output without a progress journal (the run stopped before its first layer was done); delete that folder and start again");
        JsonObject journal;
        try
        {
            journal = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new FormatException("not a JSON object");
        }
        catch (Exception e) when (e is System.Text.Json.JsonException or FormatException or DecoderFallbackException)
        {
            throw new MoeCompressException(ErrorKind.Io, $"{path}: unreadable progress journal ({SafetensorsFile.OneLine(e.Message)}); delete {tempDir} and start again", e);
        }
        if (journal["plan_sha256"]?.GetValue<string>() != planHash)
            throw new MoeCompressException(ErrorKind.Usage,
                $"{tempDir}: was written by a run with other options or another input (its tensor plan differs); rerun with the same options, or delete that folder");
        var written = new HashSet<string>(StringComparer.Ordinal);
        foreach (var n in journal["written"] as JsonArray ?? []) written.Add(n!.GetValue<string>());
        return (written, journal["state"] as JsonObject);
    }

    /// <summary>Opens the shard files of a partial folder, checks their headers, marks the journaled tensors written and
    /// deletes every other file (they are written again before the commit).</summary>
    private void ReopenPartial(HashSet<string> written)
    {
        var shardFiles = new HashSet<string>(_shards.Select(s => s.TempPath), StringComparer.Ordinal);
        foreach (var file in Directory.GetFiles(TemporaryDirectory, "*", SearchOption.AllDirectories))
        {
            var rel = Path.GetRelativePath(TemporaryDirectory, file);
            if (shardFiles.Contains(file) || rel == JournalFileName || rel.StartsWith(ScratchFolderName + Path.DirectorySeparatorChar, StringComparison.Ordinal)) continue;
            File.Delete(file);
        }
        foreach (var shard in _shards)
        {
            try
            {
                shard.Handle = File.OpenHandle(shard.TempPath, FileMode.Open, FileAccess.ReadWrite, FileShare.Read);
                var header = new byte[shard.Plan.Header.Length];
                if (RandomAccess.GetLength(shard.Handle) != shard.Plan.FileLength || RandomAccess.Read(shard.Handle, header, 0) != header.Length
                    || !header.AsSpan().SequenceEqual(shard.Plan.Header))
                    throw new MoeCompressException(ErrorKind.Io,
                        $"{shard.TempPath}: does not match the planned shard (size or header differ); delete {TemporaryDirectory} and start again");
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new MoeCompressException(ErrorKind.Io, $"{shard.TempPath}: cannot reopen the partial shard: {SafetensorsFile.OneLine(e.Message)}", e);
            }
            shard.ContiguousEnd = shard.Plan.DataSectionOffset;
            for (var i = 0; i < shard.Plan.Tensors.Count; i++)
            {
                if (!written.Contains(shard.Plan.Tensors[i].Name)) continue;
                var slot = _slots[shard.Plan.Tensors[i].Name];
                slot.State = 2;
                shard.Done[i] = true;
                _pendingTensors--;
                _writtenBytes += slot.Length;
            }
            AdvanceCompleted(shard);
            if (!_options.HashShards) continue;
            shard.Map = MemoryMappedFile.CreateFromFile(shard.Handle, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: true);
            shard.View = shard.Map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* basePointer = null;
            shard.View.SafeMemoryMappedViewHandle.AcquirePointer(ref basePointer);
            shard.Base = basePointer + shard.View.PointerOffset;
        }
    }

    private void CreateShardFile(ShardState shard)
    {
        try
        {
            long length = shard.Plan.FileLength;
            shard.Handle = File.OpenHandle(shard.TempPath, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.Read,
                FileOptions.None, preallocationSize: length);
            RandomAccess.SetLength(shard.Handle, length);
            RandomAccess.Write(shard.Handle, shard.Plan.Header, 0);
            shard.ContiguousEnd = shard.Plan.DataSectionOffset;
            AdvanceCompleted(shard);
            if (!_options.HashShards) return;
            shard.Map = MemoryMappedFile.CreateFromFile(shard.Handle, null, 0, MemoryMappedFileAccess.Read,
                HandleInheritability.None, leaveOpen: true);
            shard.View = shard.Map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* basePointer = null;
            shard.View.SafeMemoryMappedViewHandle.AcquirePointer(ref basePointer);
            shard.Base = basePointer + shard.View.PointerOffset;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new MoeCompressException(ErrorKind.Io,
                $"{shard.TempPath}: cannot create a {shard.Plan.FileLength}-byte shard file: {SafetensorsFile.OneLine(e.Message)}", e);
        }
    }

    // ---------------------------------------------------------------- writing tensors

    /// <summary>
    /// Writes one planned tensor's bytes (exactly its planned size) with positional writes in 16 MiB chunks.
    /// Thread-safe for distinct tensors. To copy a tensor unchanged from an input file, prefer
    /// <see cref="CopyTensorFrom(string, SafetensorsFile, string?, CancellationToken)"/> (in-kernel, no resident pages).
    /// </summary>
    /// <exception cref="ArgumentException">Unknown tensor or wrong byte count.</exception>
    /// <exception cref="InvalidOperationException">The tensor was already written.</exception>
    /// <exception cref="MoeCompressException"><see cref="ErrorKind.Io"/> when the write fails.</exception>
    public void Write(string name, ReadOnlySpan<byte> data)
    {
        var slot = Begin(name, data.Length);
        bool ok = false;
        try
        {
            for (long done = 0; done < data.Length; )
            {
                int n = (int)Math.Min(ChunkBytes, data.Length - done);
                WriteAt(slot, data.Slice((int)done, n), done);
                done += n;
                Advance(slot, done);
            }
            ok = true;
        }
        finally { End(slot, ok); }
    }

    /// <summary>
    /// Writes one planned tensor from a CPU, contiguous TorchSharp tensor with the planned shape and a dtype with the
    /// same bytes (<see cref="SafetensorsDTypes.FromScalarType"/>). Also accepted, as raw bit patterns: a Byte tensor
    /// for an F8 spec, and Int16/Int32/Int64 for U16/U32/U64. Tensors of any size (written in 16 MiB chunks straight
    /// from the tensor's memory).
    /// The tensor is not disposed.
    /// </summary>
    public void Write(string name, torch.Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        var spec = GetSlot(name).Spec;
        if (tensor.device_type != DeviceType.CPU)
            throw new ArgumentException($"tensor '{name}' is on {tensor.device}; move it to the CPU before writing", nameof(tensor));
        if (!tensor.is_contiguous())
            throw new ArgumentException($"tensor '{name}' is not contiguous; call contiguous() before writing", nameof(tensor));
        if (!BytesCompatible(tensor.dtype, spec.DType))
            throw new ArgumentException($"tensor '{name}' is {tensor.dtype} but the plan says {spec.DType.ToHeaderName()}", nameof(tensor));
        if (!tensor.shape.AsSpan().SequenceEqual(spec.Shape))
            throw new ArgumentException(
                $"tensor '{name}' has shape [{string.Join(", ", tensor.shape)}] but the plan says [{string.Join(", ", spec.Shape)}]",
                nameof(tensor));

        long total = spec.ByteLength;
        if (total <= ChunkBytes)
        {
            Write(name, (ReadOnlySpan<byte>)tensor.bytes);
            GC.KeepAlive(tensor);
            return;
        }
        var slot = Begin(name, total);
        bool ok = false;
        try
        {
            using var scope = torch.NewDisposeScope();
            var flat = tensor.view(-1);
            long itemSize = spec.DType.ItemSize();
            long perChunk = ChunkBytes / itemSize, count = total / itemSize;
            for (long start = 0; start < count; start += perChunk)
            {
                long n = Math.Min(perChunk, count - start);
                using var part = flat.narrow(0, start, n);
                WriteAt(slot, part.bytes, start * itemSize);
                Advance(slot, (start + n) * itemSize);
            }
            ok = true;
        }
        finally { End(slot, ok); }
    }

    /// <summary>
    /// Copies a tensor from an open safetensors file into the planned tensor <paramref name="name"/> (dtype and shape must
    /// match). On Linux the bytes move inside the kernel (<c>copy_file_range</c>); otherwise, or where that is not
    /// supported, they are written from the source's memory map, whose pages are then released so the resident size
    /// stays small.
    /// </summary>
    public void CopyTensorFrom(string name, SafetensorsFile source, string? sourceName = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(source);
        string from = sourceName ?? name;
        var info = source.GetInfo(from);
        var spec = GetSlot(name).Spec;
        if (info.DType != spec.DType || !info.Shape.AsSpan().SequenceEqual(spec.Shape))
            throw new ArgumentException(
                $"{source.Path}: tensor '{from}' is {info.DType.ToHeaderName()} [{string.Join(", ", info.Shape)}] but the plan " +
                $"says '{name}' is {spec.DType.ToHeaderName()} [{string.Join(", ", spec.Shape)}]", nameof(source));

        var slot = Begin(name, info.ByteLength);
        bool ok = false;
        try
        {
            long sourceOffset = source.DataSectionOffset + info.DataBegin;
            var handle = slot.Shard.Handle!;
            for (long done = 0; done < info.ByteLength; )
            {
                cancellationToken.ThrowIfCancellationRequested();
                int n = (int)Math.Min(ChunkBytes, info.ByteLength - done);
                long copied = NativeFileOps.TryCopyFileRange(source.Handle, sourceOffset + done, handle, slot.FileOffset + done, n);
                if (copied < n)
                {
                    WriteAt(slot, source.GetBytes(from, done + copied, n - (int)copied), done + copied);
                    source.ReleaseMappedRange(sourceOffset + done + copied, n - copied);
                }
                done += n;
                Advance(slot, done);
            }
            ok = true;
        }
        finally { End(slot, ok); }
    }

    /// <summary>
    /// Copies a tensor from any source: in-kernel or from the map for safetensors files and checkpoints, through
    /// <see cref="ITensorSource.GetBytes"/> otherwise.
    /// </summary>
    public void CopyTensorFrom(string name, ITensorSource source, string? sourceName = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(source);
        string from = sourceName ?? name;
        switch (source)
        {
            case SafetensorsFile file: CopyTensorFrom(name, file, from, cancellationToken); break;
            case SafetensorsCheckpoint checkpoint: CopyTensorFrom(name, checkpoint.GetFile(from), from, cancellationToken); break;
            default:
            {
                var info = source.GetInfo(from);
                var spec = GetSlot(name).Spec;
                if (info.DType != spec.DType || !info.Shape.AsSpan().SequenceEqual(spec.Shape))
                    throw new ArgumentException($"tensor '{from}' does not match the plan's dtype/shape for '{name}'", nameof(source));
                Write(name, source.GetBytes(from));
                break;
            }
        }
    }

    private static bool BytesCompatible(torch.ScalarType type, SafetensorsDType dtype)
    {
        if (SafetensorsDTypes.TryFromScalarType(type, out var d) && d == dtype) return true;
        return (dtype.IsFloat8() && type == torch.ScalarType.Byte)
               || (dtype == SafetensorsDType.U16 && type == torch.ScalarType.Int16)
               || (dtype == SafetensorsDType.U32 && type == torch.ScalarType.Int32)
               || (dtype == SafetensorsDType.U64 && type == torch.ScalarType.Int64);
    }

    private Slot GetSlot(string name)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _slots.TryGetValue(name, out var slot) ? slot
            : throw new ArgumentException($"tensor '{name}' is not in the plan", nameof(name));
    }

    private Slot Begin(string name, long length)
    {
        var slot = GetSlot(name);
        lock (_lock)
        {
            if (_committing) throw new InvalidOperationException("the checkpoint is being committed; no more writes");
            if (slot.State != 0)
                throw new InvalidOperationException($"tensor '{name}' was already written{(slot.State == 1 ? " (or is being written)" : "")}");
            if (length != slot.Length)
                throw new ArgumentException($"tensor '{name}' needs {slot.Length} bytes, got {length}", nameof(name));
            slot.State = 1;
        }
        return slot;
    }

    private void WriteAt(Slot slot, ReadOnlySpan<byte> data, long offsetInTensor)
    {
        try
        {
            RandomAccess.Write(slot.Shard.Handle!, data, slot.FileOffset + offsetInTensor);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new MoeCompressException(ErrorKind.Io,
                $"{slot.Shard.TempPath}: writing tensor '{slot.Spec.Name}' failed: {SafetensorsFile.OneLine(e.Message)}", e);
        }
    }

    /// <summary>Records that the first <paramref name="done"/> bytes of a tensor are on disk (feeds the hashers).</summary>
    private void Advance(Slot slot, long done)
    {
        var shard = slot.Shard;
        lock (_lock)
        {
            if (shard.NextIndex == slot.Index && shard.ContiguousEnd < slot.FileOffset + done)
            {
                shard.ContiguousEnd = slot.FileOffset + done;
                Monitor.PulseAll(_lock);
            }
        }
        StartWriteback(shard);
    }

    /// <summary>
    /// With <see cref="CheckpointWriterOptions.FlushToDisk"/>, starts writing each completed 64 MiB of a shard to disk
    /// right away (Linux <c>sync_file_range</c>), so the fsync in <see cref="Commit"/> overlaps the copy instead of
    /// following it.
    /// </summary>
    private void StartWriteback(ShardState shard)
    {
        if (!_options.FlushToDisk) return;
        long from, to;
        lock (_lock)
        {
            if (shard.ContiguousEnd - shard.WritebackFrom < WritebackBytes) return;
            from = shard.WritebackFrom;
            to = shard.ContiguousEnd;
            shard.WritebackFrom = to;
        }
        NativeFileOps.TryStartWriteback(shard.Handle!, from, to - from);
    }

    private void End(Slot slot, bool ok)
    {
        lock (_lock)
        {
            if (!ok)
            {
                // A failed or cancelled write leaves the tensor partly on disk (and perhaps partly hashed): the
                // checkpoint can no longer be committed, only disposed.
                slot.State = 0;
                _faulted = true;
                return;
            }
            slot.State = 2;
            slot.Shard.Done[slot.Index] = true;
            _pendingTensors--;
            AdvanceCompleted(slot.Shard);
            Monitor.PulseAll(_lock);
        }
        Interlocked.Add(ref _writtenBytes, slot.Length);
        StartWriteback(slot.Shard);
    }

    /// <summary>Moves a shard's contiguous-written mark over every completed tensor. Call under the lock.</summary>
    private static void AdvanceCompleted(ShardState shard)
    {
        while (shard.NextIndex < shard.Done.Length && shard.Done[shard.NextIndex])
        {
            shard.ContiguousEnd = Math.Max(shard.ContiguousEnd, shard.TensorEnds[shard.NextIndex]);
            shard.NextIndex++;
        }
    }

    // ---------------------------------------------------------------- other files

    /// <summary>Writes a UTF-8 text file (config.json, a recipe, ...) into the checkpoint, creating subfolders.</summary>
    public void WriteTextFile(string relativePath, string content) =>
        WriteFile(relativePath, new UTF8Encoding(false).GetBytes(content));

    /// <summary>Writes a file into the checkpoint, creating subfolders. Writing the same path again replaces it.</summary>
    /// <exception cref="ArgumentException">The path escapes the checkpoint or names a weight, index or manifest file.</exception>
    public void WriteFile(string relativePath, ReadOnlySpan<byte> content)
    {
        string path = ResolveExtraFile(relativePath);
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            using var handle = File.OpenHandle(path, FileMode.Create, FileAccess.Write, FileShare.None);
            RandomAccess.Write(handle, content, 0);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new MoeCompressException(ErrorKind.Io, $"{path}: cannot write: {SafetensorsFile.OneLine(e.Message)}", e);
        }
        lock (_lock)
            if (!_extraFiles.Contains(Normalize(relativePath))) _extraFiles.Add(Normalize(relativePath));
    }

    /// <summary>
    /// Copies every non-weight file of a source checkpoint directory (recursively): tokenizer files, configs, chat
    /// templates, README, licence, ... Skipped: weight files (<c>*.safetensors</c>, <c>*.bin</c>, <c>*.pt</c>,
    /// <c>*.pth</c>, <c>*.gguf</c>, ...), weight indexes (<c>*.index.json</c>), the manifest, hidden entries (names
    /// starting with a dot, such as <c>.cache</c>), files already written with <see cref="WriteFile"/>, and the
    /// relative paths or file names in <paramref name="exclude"/> (for example <c>config.json</c> when the caller
    /// writes its own). Symbolic links are followed (a Hugging Face cache snapshot is all links). Returns the copied
    /// relative paths.
    /// </summary>
    public IReadOnlyList<string> CopyAuxiliaryFiles(string sourceDir, IEnumerable<string>? exclude = null,
        CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        string source = Path.GetFullPath(sourceDir);
        if (!Directory.Exists(source))
            throw new MoeCompressException(ErrorKind.Io, $"{source}: source directory not found");
        var excluded = new HashSet<string>(StringComparer.Ordinal);
        if (exclude is not null)
            foreach (var e in exclude) excluded.Add(Normalize(e));

        var copied = new List<string>();
        var files = Directory.GetFiles(source, "*", new EnumerationOptions
        {
            RecurseSubdirectories = true, AttributesToSkip = FileAttributes.Hidden | FileAttributes.System,
            IgnoreInaccessible = false, ReturnSpecialDirectories = false,
        });
        Array.Sort(files, StringComparer.Ordinal);
        foreach (var file in files)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (IsUnder(file, Destination) || IsUnder(file, TemporaryDirectory)) continue;
            string relative = Normalize(Path.GetRelativePath(source, file));
            string fileName = Path.GetFileName(file);
            if (HasHiddenPart(relative) || IsWeightFile(fileName) || IsReserved(relative)) continue;
            if (excluded.Contains(relative) || excluded.Contains(fileName)) continue;
            lock (_lock)
                if (_extraFiles.Contains(relative)) continue;
            string target = Path.Combine(TemporaryDirectory, relative);
            try
            {
                Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                File.Copy(file, target, overwrite: false);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new MoeCompressException(ErrorKind.Io, $"{file}: cannot copy into the checkpoint: {SafetensorsFile.OneLine(e.Message)}", e);
            }
            lock (_lock) _extraFiles.Add(relative);
            copied.Add(relative);
        }
        return copied;
    }

    /// <summary>
    /// Adds a top-level property to the manifest (for example the expert index map old → new). The standard
    /// properties (tool, tool_version, created_utc, options, tensor_count, total_tensor_bytes, shards, files) are
    /// reserved. The value is deep-copied.
    /// </summary>
    public void SetManifestProperty(string name, JsonNode? value)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (Array.IndexOf(CheckpointManifest.ReservedProperties, name) >= 0)
            throw new ArgumentException($"manifest property '{name}' is reserved", nameof(name));
        lock (_lock) _manifestExtra[name] = value?.DeepClone();
    }

    private string ResolveExtraFile(string relativePath)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_committed) throw new InvalidOperationException("the checkpoint is already committed");
        if (!SafetensorsIndex.IsSafeRelativeFileName(relativePath))
            throw new ArgumentException($"'{relativePath}' is not a relative path inside the checkpoint", nameof(relativePath));
        string normalized = Normalize(relativePath);
        if (IsReserved(normalized) || normalized.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase))
            throw new ArgumentException($"'{relativePath}' is written by the checkpoint writer itself", nameof(relativePath));
        return Path.Combine(TemporaryDirectory, normalized);
    }

    private bool IsReserved(string relative)
    {
        if (string.Equals(relative, CheckpointManifest.FileName, StringComparison.OrdinalIgnoreCase)) return true;
        if (string.Equals(relative, SafetensorsIndex.FileName, StringComparison.OrdinalIgnoreCase)) return true;
        foreach (var s in _shards)
            if (string.Equals(relative, s.Plan.FileName, StringComparison.OrdinalIgnoreCase)) return true;
        return false;
    }

    private static bool IsWeightFile(string fileName)
    {
        if (fileName.EndsWith(".index.json", StringComparison.OrdinalIgnoreCase)) return true;
        foreach (var ext in WeightExtensions)
            if (fileName.EndsWith(ext, StringComparison.OrdinalIgnoreCase)) return true;
        return false;
    }

    private static bool HasHiddenPart(string relative)
    {
        foreach (var part in relative.Split('/'))
            if (part.StartsWith('.')) return true;
        return false;
    }

    private static bool IsUnder(string path, string directory) =>
        path.StartsWith(directory + Path.DirectorySeparatorChar, StringComparison.Ordinal);

    private static string Normalize(string relative) => relative.Replace('\\', '/');

    // ---------------------------------------------------------------- hashing

    private void StartHashing()
    {
        // As many hashers as cores: the writing thread mostly waits on the kernel copy, and hashing is the CPU cost.
        int count = Math.Clamp(Environment.ProcessorCount, 1, 4);
        count = Math.Min(count, Math.Max(1, _shards.Length));
        _hashThreads = new Thread[count];
        for (int i = 0; i < count; i++)
        {
            var t = new Thread(() => HashLoop(false, CancellationToken.None))
            {
                IsBackground = true, Name = $"moe-compress shard hash {i}",
            };
            _hashThreads[i] = t;
            t.Start();
        }
    }

    /// <summary>
    /// Hashes written shard prefixes until every shard is hashed (or hashing is stopped). Background threads run it
    /// from <see cref="Create"/>; <see cref="Commit"/> joins in.
    /// </summary>
    private void HashLoop(bool commitThread, CancellationToken cancellationToken)
    {
        while (true)
        {
            ShardState? shard;
            long from, to;
            lock (_lock)
            {
                while (true)
                {
                    if (_stopHashing || _hashError is not null) return;
                    shard = PickShardToHash();
                    if (shard is not null)
                    {
                        shard.Hashing = true;
                        from = shard.HashedTo;
                        to = Math.Min(shard.ContiguousEnd, from + HashSliceBytes);
                        break;
                    }
                    if (AllHashed()) return;
                    if (commitThread)
                    {
                        cancellationToken.ThrowIfCancellationRequested();
                        Monitor.Wait(_lock, 100);
                    }
                    else Monitor.Wait(_lock);
                }
            }

            try
            {
                // Hash straight from a read-only map of the output (page cache, no copy), then drop the pages from
                // this process so the resident size stays small.
                for (long at = from; at < to; )
                {
                    int n = (int)Math.Min(ChunkBytes, to - at);
                    shard.Sha.AppendData(new ReadOnlySpan<byte>(shard.Base + at, n));
                    NativeFileOps.TryReleaseMappedPages(shard.Base, shard.Plan.FileLength, at, n);
                    at += n;
                }
            }
            catch (Exception e)
            {
                lock (_lock)
                {
                    _hashError ??= e;
                    shard.Hashing = false;
                    Monitor.PulseAll(_lock);
                }
                return;
            }

            lock (_lock)
            {
                shard.HashedTo = to;
                shard.Hashing = false;
                if (to == shard.Plan.FileLength) shard.Digest = shard.Sha.GetHashAndReset();
                Monitor.PulseAll(_lock);
            }
        }
    }

    private static void CloseMapping(ShardState shard)
    {
        if (shard.Base != null)
        {
            shard.Base = null;
            shard.View!.SafeMemoryMappedViewHandle.ReleasePointer();
        }
        shard.View?.Dispose();
        shard.Map?.Dispose();
        shard.View = null;
        shard.Map = null;
    }

    private ShardState? PickShardToHash()
    {
        foreach (var s in _shards)
            if (!s.Hashing && s.HashedTo < s.ContiguousEnd) return s;
        return null;
    }

    private bool AllHashed()
    {
        foreach (var s in _shards)
            if (s.Digest is null) return false;
        return true;
    }

    // ---------------------------------------------------------------- commit

    /// <summary>
    /// Finishes the checkpoint: checks every planned tensor was written, completes the shard hashes, writes
    /// <c>model.safetensors.index.json</c> (when more than one shard) and <c>moe-compress-manifest.json</c>, flushes
    /// everything to disk (<see cref="CheckpointWriterOptions.FlushToDisk"/>), and renames the temporary folder to the
    /// destination. An existing destination (allowed by <see cref="CheckpointWriterOptions.Overwrite"/>) is moved
    /// aside first and deleted after the rename.
    /// </summary>
    /// <exception cref="InvalidOperationException">Some planned tensors were never written, or already committed.</exception>
    /// <exception cref="MoeCompressException"><see cref="ErrorKind.Io"/> when a file operation fails.</exception>
    public void Commit(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_committed) throw new InvalidOperationException("the checkpoint is already committed");
        if (_commitAttempted) throw new InvalidOperationException("an earlier commit failed; dispose the writer and start again");
        lock (_lock)
        {
            if (_faulted)
                throw new InvalidOperationException($"{Destination}: a tensor write failed or was cancelled; the checkpoint cannot be committed");
            if (_pendingTensors > 0)
            {
                var missing = new List<string>();
                foreach (var s in _slots.Values)
                    if (s.State != 2 && missing.Count < 5) missing.Add(s.Spec.Name);
                throw new InvalidOperationException(
                    $"{Destination}: {_pendingTensors} planned tensor(s) were never written ({string.Join(", ", missing)}" +
                    $"{(_pendingTensors > missing.Count ? ", ..." : "")})");
            }
            _committing = true;
            _commitAttempted = true;
            Monitor.PulseAll(_lock);
        }

        if (_options.HashShards) HashLoop(true, cancellationToken);
        foreach (var t in _hashThreads) t.Join();
        if (_hashError is { } error)
            throw new MoeCompressException(ErrorKind.Io, $"{TemporaryDirectory}: hashing the shards failed: {SafetensorsFile.OneLine(error.Message)}", error);

        try
        {
            CommitFiles(cancellationToken);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new MoeCompressException(ErrorKind.Io, $"{Destination}: committing the checkpoint failed: {SafetensorsFile.OneLine(e.Message)}", e);
        }
    }

    private void CommitFiles(CancellationToken cancellationToken)
    {
        if (_options.Resumable)
        {
            var scratch = Path.Combine(TemporaryDirectory, ScratchFolderName);
            if (Directory.Exists(scratch)) Directory.Delete(scratch, recursive: true);
            File.Delete(Path.Combine(TemporaryDirectory, JournalFileName));
        }
        var shardEntries = new List<ManifestFileEntry>(_shards.Length);
        foreach (var s in _shards)
        {
            CloseMapping(s);
            if (_options.FlushToDisk) RandomAccess.FlushToDisk(s.Handle!);
            s.Handle!.Dispose();
            shardEntries.Add(new ManifestFileEntry(s.Plan.FileName, s.Plan.FileLength,
                s.Digest is null ? null : Convert.ToHexStringLower(s.Digest))
            {
                TensorCount = s.Plan.Tensors.Count,
            });
        }

        if (WritesIndex)
        {
            var weightMap = new Dictionary<string, string>(_slots.Count, StringComparer.Ordinal);
            foreach (var s in _shards)
                foreach (var t in s.Plan.Tensors) weightMap.Add(t.Name, s.Plan.FileName);
            WriteDurable(Path.Combine(TemporaryDirectory, SafetensorsIndex.FileName), SafetensorsIndex.Encode(weightMap, TotalTensorBytes));
        }

        var others = new List<string>();
        lock (_lock) others.AddRange(_extraFiles);
        if (WritesIndex) others.Add(SafetensorsIndex.FileName);
        others.Sort(StringComparer.Ordinal);
        var fileEntries = new List<ManifestFileEntry>(others.Count);
        foreach (var relative in others)
        {
            string path = Path.Combine(TemporaryDirectory, relative);
            if (_options.FlushToDisk && relative != SafetensorsIndex.FileName) FlushFile(path);
            fileEntries.Add(new ManifestFileEntry(relative, new FileInfo(path).Length,
                CheckpointManifest.Sha256Hex(path, cancellationToken)));
        }

        JsonObject extra;
        lock (_lock) extra = (JsonObject)_manifestExtra.DeepClone();
        var manifest = CheckpointManifest.Encode(_options.ToolVersion, DateTimeOffset.UtcNow, _options.ManifestOptions,
            _slots.Count, TotalTensorBytes, shardEntries, fileEntries, extra);
        WriteDurable(Path.Combine(TemporaryDirectory, CheckpointManifest.FileName), manifest);
        if (_options.FlushToDisk) SyncDirectories(TemporaryDirectory);

        cancellationToken.ThrowIfCancellationRequested();
        string parent = Path.GetDirectoryName(Destination)!;
        string? aside = null;
        if (Directory.Exists(Destination) || File.Exists(Destination))
        {
            if (!_options.Overwrite)
                throw new MoeCompressException(ErrorKind.Io, $"{Destination}: destination appeared while writing; not replacing it");
            aside = Path.Combine(parent, $".{Path.GetFileName(Destination)}.old-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4))}");
            if (Directory.Exists(Destination)) Directory.Move(Destination, aside);
            else File.Move(Destination, aside);
        }
        try
        {
            Directory.Move(TemporaryDirectory, Destination);
        }
        catch
        {
            if (aside is not null)
            {
                try
                {
                    if (Directory.Exists(aside)) Directory.Move(aside, Destination);
                    else File.Move(aside, Destination);
                }
                catch (IOException) { /* the old checkpoint stays at 'aside'; the original error is what matters */ }
            }
            throw;
        }
        _committed = true;
        _folderLock.Dispose();
        if (_options.FlushToDisk) NativeFileOps.TrySyncDirectory(parent);
        if (aside is not null)
        {
            try
            {
                if (Directory.Exists(aside)) Directory.Delete(aside, recursive: true);
                else File.Delete(aside);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // The new checkpoint is in place; a leftover hidden folder is not worth failing for.
            }
        }
    }

    private void WriteDurable(string path, byte[] content)
    {
        using var handle = File.OpenHandle(path, FileMode.Create, FileAccess.Write, FileShare.None);
        RandomAccess.Write(handle, content, 0);
        if (_options.FlushToDisk) RandomAccess.FlushToDisk(handle);
    }

    private static void FlushFile(string path)
    {
        using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite, FileShare.Read);
        RandomAccess.FlushToDisk(handle);
    }

    private static void SyncDirectories(string root)
    {
        NativeFileOps.TrySyncDirectory(root);
        foreach (var dir in Directory.EnumerateDirectories(root, "*", SearchOption.AllDirectories))
            NativeFileOps.TrySyncDirectory(dir);
    }

    // ---------------------------------------------------------------- dispose

    /// <summary>
    /// Without a successful <see cref="Commit"/>: stops hashing, closes the shard files and deletes the temporary
    /// folder, leaving no partial output. After a commit: nothing to do.
    /// </summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        lock (_lock)
        {
            _stopHashing = true;
            Monitor.PulseAll(_lock);
        }
        foreach (var t in _hashThreads) t.Join();
        foreach (var s in _shards)
        {
            CloseMapping(s);
            s.Handle?.Dispose();
            s.Sha.Dispose();
        }
        // A resumable folder with saved progress is kept for --resume (the next run without it names the folder instead of
        // reusing it); one with nothing to resume from is deleted like any other.
        var keep = _options.Resumable && (_progressSaved || Resumed);
        if (!_committed && !keep && Directory.Exists(TemporaryDirectory))
        {
            try { Directory.Delete(TemporaryDirectory, recursive: true); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Retry once: another process (an indexer, a virus scanner) may have held a file briefly.
                Thread.Sleep(50);
                try { Directory.Delete(TemporaryDirectory, recursive: true); }
                catch (Exception again) when (again is IOException or UnauthorizedAccessException) { }
            }
        }
        _folderLock.Dispose();
    }
}
