using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Input;
using TorchSharp;

namespace MoECompress.Formats.Safetensors;

/// <summary>
/// One safetensors file, memory-mapped read-only (the file is never modified) with its header validated strictly on
/// <see cref="Open"/>: length prefix bounds, UTF-8, JSON object, known dtypes, integer shapes, byte counts equal to
/// shape × item size, offsets inside the data section, entries contiguous and covering it exactly, no duplicate
/// names, string-only <c>__metadata__</c>. Every failure is a <see cref="CheckpointFormatException"/> naming the
/// file, the tensor and the byte offset.
/// </summary>
/// <remarks>
/// Reads are thread-safe. Spans and pointers handed out are views of the mapping and are valid only until
/// <see cref="Dispose"/>. Data is little-endian as stored (this library assumes a little-endian host, as libtorch
/// does). Mapped pages that were read count towards the process's resident size until the kernel needs them back;
/// <see cref="ReleaseMappedPages"/> drops them early when streaming through large files.
/// </remarks>
public sealed unsafe class SafetensorsFile : ITensorSource, IDisposable
{
    private const int ChunkBytes = 16 << 20;

    private readonly SafeFileHandle _handle;
    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private readonly SafetensorsHeader _header;
    private readonly Dictionary<string, TensorInfo> _byName;
    private readonly string[] _names;
    private byte* _base;
    private int _disposed;

    /// <summary>Full path of the file.</summary>
    public string Path { get; }

    /// <summary>Size of the file in bytes.</summary>
    public long FileLength { get; }

    /// <summary>The <c>__metadata__</c> map (empty when the header has none).</summary>
    public IReadOnlyDictionary<string, string> Metadata => _header.Metadata;

    /// <summary>True when the header has a <c>__metadata__</c> entry.</summary>
    public bool HasMetadata => _header.HasMetadata;

    /// <summary>Tensor entries in header order.</summary>
    public IReadOnlyList<TensorInfo> Tensors => _header.Tensors;

    /// <summary>Tensor names in header order.</summary>
    public IReadOnlyList<string> Names => _names;

    /// <summary>File offset where the data section starts (8 + header length); tensor offsets are relative to it.</summary>
    public long DataSectionOffset => _header.DataSectionOffset;

    /// <summary>Length of the JSON header (without the 8-byte prefix).</summary>
    public long HeaderLength => _header.HeaderLength;

    /// <summary>Sum of all tensor byte lengths (= the data section length).</summary>
    public long TotalTensorBytes => _header.DataLength;

    /// <summary>Handle of the open file, for in-kernel copies by <see cref="CheckpointWriter"/>.</summary>
    internal SafeFileHandle Handle => _handle;

    private SafetensorsFile(string path, long fileLength, SafeFileHandle handle, MemoryMappedFile map,
        MemoryMappedViewAccessor view, byte* basePointer, SafetensorsHeader header)
    {
        Path = path;
        FileLength = fileLength;
        _handle = handle;
        _map = map;
        _view = view;
        _base = basePointer;
        _header = header;
        _names = new string[header.Tensors.Count];
        _byName = new Dictionary<string, TensorInfo>(header.Tensors.Count, StringComparer.Ordinal);
        for (int i = 0; i < _names.Length; i++)
        {
            var t = header.Tensors[i];
            _names[i] = t.Name;
            _byName.Add(t.Name, t);
        }
    }

    /// <summary>Opens, maps and validates a safetensors file.</summary>
    /// <exception cref="CheckpointFormatException">
    /// The file is malformed (<see cref="ErrorKind.InvalidCheckpoint"/>), or cannot be opened (<see cref="ErrorKind.Io"/>).
    /// </exception>
    public static SafetensorsFile Open(string path)
    {
        string full = System.IO.Path.GetFullPath(path);
        // Checked before opening: opening a named pipe blocks until a writer appears, a device never ends.
        var kind = InputFile.KindOf(full);
        if (kind == InputFileKind.Missing)
            throw new CheckpointFormatException(full, null, null, "file not found", ErrorKind.Io);
        if (kind != InputFileKind.Regular)
            throw new CheckpointFormatException(full, null, null, $"the safetensors file {InputFile.Describe(kind)}");
        SafeFileHandle handle;
        try
        {
            handle = File.OpenHandle(full, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new CheckpointFormatException(full, null, null, "file not found", ErrorKind.Io);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointFormatException(full, null, null, $"cannot open file: {OneLine(e.Message)}", ErrorKind.Io);
        }

        MemoryMappedFile? map = null;
        MemoryMappedViewAccessor? view = null;
        bool acquired = false;
        try
        {
            long length = RandomAccess.GetLength(handle);
            Span<byte> prefix = stackalloc byte[8];
            int got = 0;
            while (got < 8 && got < length)
            {
                int r = RandomAccess.Read(handle, prefix[got..], got);
                if (r <= 0) break;
                got += r;
            }
            if (length >= 8 && got < 8)
                throw new CheckpointFormatException(full, null, got, "could not read the 8-byte header-length prefix",
                    ErrorKind.Io);
            long headerLength = SafetensorsHeader.ReadHeaderLength(full, prefix, length);

            map = MemoryMappedFile.CreateFromFile(handle, null, 0, MemoryMappedFileAccess.Read,
                HandleInheritability.None, leaveOpen: true);
            view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* basePointer = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref basePointer);
            acquired = true;
            basePointer += view.PointerOffset;

            var json = new ReadOnlySpan<byte>(basePointer + 8, checked((int)headerLength));
            var header = SafetensorsHeader.Read(full, json, length - 8 - headerLength);
            long now = RandomAccess.GetLength(handle);
            if (now != length)
                throw new CheckpointFormatException(full, null, null,
                    $"the file changed size while being read ({length} bytes when opened, {now} later); is another program writing it?");
            return new SafetensorsFile(full, length, handle, map, view, basePointer, header);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Cleanup();
            throw new CheckpointFormatException(full, null, null, $"cannot read file: {OneLine(e.Message)}", ErrorKind.Io);
        }
        catch
        {
            Cleanup();
            throw;
        }

        void Cleanup()
        {
            if (acquired) view!.SafeMemoryMappedViewHandle.ReleasePointer();
            view?.Dispose();
            map?.Dispose();
            handle.Dispose();
        }
    }

    /// <inheritdoc />
    public bool Contains(string name) => _byName.ContainsKey(name);

    /// <summary>Header entry of a tensor, or false if the file has no such tensor.</summary>
    public bool TryGetInfo(string name, out TensorInfo info)
    {
        if (_byName.TryGetValue(name, out var i)) { info = i; return true; }
        info = null!;
        return false;
    }

    /// <inheritdoc />
    public TensorInfo GetInfo(string name) => _byName.TryGetValue(name, out var info) ? info
        : throw new CheckpointFormatException(Path, name, null, "no such tensor in this file");

    /// <summary>Absolute file offset of the first byte of a tensor's data.</summary>
    public long FileOffsetOf(string name) => DataSectionOffset + GetInfo(name).DataBegin;

    /// <summary>
    /// Zero-copy view of a tensor's bytes. Tensors larger than 2 GiB cannot be one span: use
    /// <see cref="GetBytes(string, long, int)"/>, <see cref="GetPointer"/> or <see cref="CopyTo(string, Span{byte}, long)"/>.
    /// </summary>
    /// <exception cref="NotSupportedException">The tensor is larger than <see cref="int.MaxValue"/> bytes.</exception>
    public ReadOnlySpan<byte> GetBytes(string name)
    {
        var info = GetInfo(name);
        if (info.ByteLength > int.MaxValue)
            throw new NotSupportedException(
                $"{Path}: tensor '{name}' is {info.ByteLength} bytes, more than one span can hold; read it in chunks " +
                "with GetBytes(name, start, length), CopyTo or GetPointer");
        return new ReadOnlySpan<byte>(DataPointer(info), (int)info.ByteLength);
    }

    /// <summary>Zero-copy view of <paramref name="length"/> bytes of a tensor starting at byte <paramref name="start"/>.</summary>
    public ReadOnlySpan<byte> GetBytes(string name, long start, int length)
    {
        var info = GetInfo(name);
        if (start < 0 || length < 0 || start > info.ByteLength - length)
            throw new ArgumentOutOfRangeException(nameof(start),
                $"range [{start}, {start + length}) is outside tensor '{name}' ({info.ByteLength} bytes)");
        return new ReadOnlySpan<byte>(DataPointer(info) + start, length);
    }

    /// <summary>Pointer to a tensor's first byte in the read-only mapping (valid until <see cref="Dispose"/>; never write).</summary>
    public byte* GetPointer(string name) => DataPointer(GetInfo(name));

    /// <summary>
    /// Copies tensor bytes starting at <paramref name="offset"/> into <paramref name="destination"/>; returns the number
    /// copied: min(destination length, bytes left). Works for tensors of any size.
    /// </summary>
    public int CopyTo(string name, Span<byte> destination, long offset = 0)
    {
        var info = GetInfo(name);
        if (offset < 0 || offset > info.ByteLength) throw new ArgumentOutOfRangeException(nameof(offset));
        int n = (int)Math.Min(destination.Length, info.ByteLength - offset);
        new ReadOnlySpan<byte>(DataPointer(info) + offset, n).CopyTo(destination);
        return n;
    }

    /// <summary>
    /// Writes a tensor's bytes to a stream in 16 MiB chunks straight from the mapping, releasing each chunk's mapped
    /// pages afterwards.
    /// </summary>
    public void CopyTo(string name, Stream destination, CancellationToken cancellationToken = default)
    {
        var info = GetInfo(name);
        byte* p = DataPointer(info);
        for (long done = 0; done < info.ByteLength; )
        {
            cancellationToken.ThrowIfCancellationRequested();
            int n = (int)Math.Min(ChunkBytes, info.ByteLength - done);
            destination.Write(new ReadOnlySpan<byte>(p + done, n));
            NativeFileOps.TryReleaseMappedPages(_base, FileLength, DataSectionOffset + info.DataBegin + done, n);
            done += n;
        }
    }

    /// <summary>
    /// Tells the OS this process is done with a tensor's mapped pages for now, so they stop counting towards its
    /// resident size (Linux <c>madvise(MADV_DONTNEED)</c>; the data stays in the page cache and is re-read on the next
    /// access). A no-op elsewhere. Never call it while a span over the tensor is still in use by another thread
    /// expecting the pages to stay resident — correctness is unaffected, only speed.
    /// </summary>
    public void ReleaseMappedPages(string name)
    {
        var info = GetInfo(name);
        ThrowIfDisposed();
        NativeFileOps.TryReleaseMappedPages(_base, FileLength, DataSectionOffset + info.DataBegin, info.ByteLength);
    }

    /// <summary>Drops a byte range of the mapping from this process's resident set (see <see cref="ReleaseMappedPages"/>).</summary>
    internal void ReleaseMappedRange(long fileOffset, long length)
    {
        ThrowIfDisposed();
        NativeFileOps.TryReleaseMappedPages(_base, FileLength, fileOffset, length);
    }

    /// <summary>
    /// A new CPU tensor with a copy of the data, of type <see cref="SafetensorsDTypes.ToScalarType"/> (U16 → Int32,
    /// U32/U64 → Int64, F8 → Float32 decoded exactly) or converted to <paramref name="as"/>. The caller disposes it.
    /// The mapped source pages are released afterwards (see <see cref="ReleaseMappedPages"/>), so reading a model
    /// tensor by tensor does not grow the resident size.
    /// </summary>
    /// <exception cref="MoeCompressException">A U64 value does not fit Int64 (<see cref="ErrorKind.InvalidValues"/>).</exception>
    public torch.Tensor ToTensor(string name, torch.ScalarType? @as = null)
    {
        var info = GetInfo(name);
        byte* src = DataPointer(info);
        using var scope = torch.NewDisposeScope();
        var natural = info.DType.ToScalarType();
        var tensor = torch.empty(info.Shape, natural);
        long count = info.ByteLength / info.DType.ItemSize();
        if (count > 0)
        {
            using var flat = tensor.view(-1);
            FillFlat(flat, info, src, count);
            // The copy is what the caller keeps: stop counting the mapped source pages towards this process.
            NativeFileOps.TryReleaseMappedPages(_base, FileLength, DataSectionOffset + info.DataBegin, info.ByteLength);
        }
        if (@as is { } target && target != natural) tensor = tensor.to_type(target);
        return tensor.MoveToOuterDisposeScope();
    }

    private void FillFlat(torch.Tensor flat, TensorInfo info, byte* src, long count)
    {
        int itemSize = info.DType.ItemSize();
        long chunkElements = ChunkBytes / itemSize;
        for (long start = 0; start < count; start += chunkElements)
        {
            long n = Math.Min(chunkElements, count - start);
            using var part = flat.narrow(0, start, n);
            Span<byte> dst = part.bytes;
            var source = new ReadOnlySpan<byte>(src + start * itemSize, checked((int)(n * itemSize)));
            switch (info.DType)
            {
                case SafetensorsDType.U16:
                {
                    var from = MemoryMarshal.Cast<byte, ushort>(source);
                    var to = MemoryMarshal.Cast<byte, int>(dst);
                    for (int i = 0; i < from.Length; i++) to[i] = from[i];
                    break;
                }
                case SafetensorsDType.U32:
                {
                    var from = MemoryMarshal.Cast<byte, uint>(source);
                    var to = MemoryMarshal.Cast<byte, long>(dst);
                    for (int i = 0; i < from.Length; i++) to[i] = from[i];
                    break;
                }
                case SafetensorsDType.U64:
                {
                    var from = MemoryMarshal.Cast<byte, ulong>(source);
                    var to = MemoryMarshal.Cast<byte, long>(dst);
                    for (int i = 0; i < from.Length; i++)
                    {
                        if (from[i] > long.MaxValue)
                            throw new MoeCompressException(ErrorKind.InvalidValues,
                                $"{Path}: tensor '{info.Name}' element {start + i} is {from[i]}, which does not fit " +
                                "torch Int64 (TorchSharp has no unsigned 64-bit type)");
                        to[i] = (long)from[i];
                    }
                    break;
                }
                case SafetensorsDType.F8_E4M3:
                case SafetensorsDType.F8_E5M2:
                    Float8.Decode(info.DType, source, MemoryMarshal.Cast<byte, float>(dst));
                    break;
                default:
                    source.CopyTo(dst);
                    break;
            }
        }
    }

    private byte* DataPointer(TensorInfo info)
    {
        ThrowIfDisposed();
        return _base + DataSectionOffset + info.DataBegin;
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);

    /// <summary>Unmaps and closes the file. Spans and pointers handed out become invalid.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _base = null;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _map.Dispose();
        _handle.Dispose();
    }

    /// <inheritdoc />
    public override string ToString() => $"{Path} ({_names.Length} tensors, {FileLength} bytes)";

    internal static string OneLine(string s) => s.Replace('\r', ' ').Replace('\n', ' ');
}
