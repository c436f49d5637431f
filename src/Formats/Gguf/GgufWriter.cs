using System.Text;
using MoECompress.Formats.Errors;

namespace MoECompress.Formats.Gguf;

/// <summary>
/// Writes a GGUF v3 file in one pass: the header (typed metadata, then tensor infos whose offsets are laid out
/// contiguously in info order, each aligned to <c>general.alignment</c>) is written first, then each tensor's bytes in
/// that order. Everything goes to a temporary file beside the destination, renamed into place by
/// <see cref="Commit"/>; disposing without committing deletes it, so a failed export leaves nothing behind.
/// </summary>
public sealed class GgufWriter : IDisposable
{
    private readonly string _destination;
    private readonly string _temp;
    private readonly FileStream _stream;
    private readonly IReadOnlyList<GgufTensorInfo> _tensors;
    private readonly int _alignment;
    private readonly long _dataOffset;
    private int _next;
    private bool _committed;

    /// <summary>The tensor infos with their offsets, in write order.</summary>
    public IReadOnlyList<GgufTensorInfo> Tensors => _tensors;

    private GgufWriter(string destination, string temp, FileStream stream, IReadOnlyList<GgufTensorInfo> tensors, int alignment, long dataOffset)
    {
        _destination = destination;
        _temp = temp;
        _stream = stream;
        _tensors = tensors;
        _alignment = alignment;
        _dataOffset = dataOffset;
    }

    /// <summary>
    /// Starts <paramref name="destination"/> with <paramref name="metadata"/> (written in order; <c>general.alignment</c>,
    /// when present, must be a UINT32 power of two) and tensors (name, ggml dimensions, type; offsets are assigned here).
    /// </summary>
    /// <exception cref="MoeCompressException">Usage: a name too long or repeated, a row that is not whole blocks, a bad
    /// alignment; Io: the destination exists and <paramref name="overwrite"/> is false.</exception>
    public static GgufWriter Create(string destination, IReadOnlyList<KeyValuePair<string, GgufValue>> metadata,
        IReadOnlyList<(string Name, long[] Dimensions, GgmlType Type)> tensors, bool overwrite = false)
    {
        destination = Path.GetFullPath(destination);
        if (!overwrite && File.Exists(destination)) throw new MoeCompressException(ErrorKind.Io, $"{destination}: already exists");
        if (Directory.Exists(destination)) throw new MoeCompressException(ErrorKind.Io, $"{destination}: is a folder");
        var alignment = GgufFile.DefaultAlignment;
        var keys = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (key, value) in metadata)
        {
            if (!keys.Add(key)) throw new MoeCompressException(ErrorKind.Usage, $"GGUF metadata key '{key}' given twice");
            if (key == GgufFile.AlignmentKey)
            {
                if (value.Type != GgufValueType.UInt32 || value.AsUInt64() is 0 || (value.AsUInt64() & (value.AsUInt64() - 1)) != 0)
                    throw new MoeCompressException(ErrorKind.Usage, $"'{key}' must be a UINT32 power of two");
                alignment = (int)value.AsUInt64();
            }
        }
        var infos = new List<GgufTensorInfo>(tensors.Count);
        var names = new HashSet<string>(StringComparer.Ordinal);
        long offset = 0;
        foreach (var (name, dims, type) in tensors)
        {
            if (Encoding.UTF8.GetByteCount(name) > GgufTensorInfo.MaxNameLength)
                throw new MoeCompressException(ErrorKind.Usage, $"GGUF tensor name '{name}' is longer than {GgufTensorInfo.MaxNameLength} bytes");
            if (!names.Add(name)) throw new MoeCompressException(ErrorKind.Usage, $"GGUF tensor '{name}' given twice");
            if (dims.Length is 0 or > 4 || dims.Any(d => d <= 0))
                throw new MoeCompressException(ErrorKind.Usage, $"GGUF tensor '{name}': dimensions [{string.Join(", ", dims)}] (1–4 positive)");
            if (!type.Fits(dims[0]))
                throw new MoeCompressException(ErrorKind.Usage, $"GGUF tensor '{name}': rows of {dims[0]} elements are not whole {type} blocks of {type.BlockSize()}");
            var info = new GgufTensorInfo(name, dims, type, offset);
            infos.Add(info);
            offset = GgufFile.Align(offset + info.ByteLength, alignment);
        }
        var dir = Path.GetDirectoryName(destination)!;
        Directory.CreateDirectory(dir);
        var temp = Path.Combine(dir, $".{Path.GetFileName(destination)}.tmp-{Guid.NewGuid():N}");
        var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);
        try
        {
            using (var w = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true))
            {
                w.Write(GgufFile.Magic);
                w.Write(3u);
                w.Write((ulong)infos.Count);
                w.Write((ulong)metadata.Count);
                foreach (var (key, value) in metadata)
                {
                    WriteString(w, key);
                    w.Write((uint)value.Type);
                    WriteValue(w, value, key);
                }
                foreach (var t in infos)
                {
                    WriteString(w, t.Name);
                    w.Write((uint)t.Dimensions.Length);
                    foreach (var d in t.Dimensions) w.Write((ulong)d);
                    w.Write((uint)t.Type);
                    w.Write((ulong)t.Offset);
                }
            }
            var dataOffset = GgufFile.Align(stream.Position, alignment);
            Pad(stream, dataOffset);
            return new GgufWriter(destination, temp, stream, infos, alignment, dataOffset);
        }
        catch
        {
            stream.Dispose();
            File.Delete(temp);
            throw;
        }
    }

    /// <summary>The size of the file <see cref="Create"/> would write for this metadata and these tensors (header,
    /// padding and data), without writing anything.</summary>
    public static long PredictFileBytes(IReadOnlyList<KeyValuePair<string, GgufValue>> metadata,
        IReadOnlyList<(string Name, long[] Dimensions, GgmlType Type)> tensors)
    {
        var alignment = metadata.FirstOrDefault(kv => kv.Key == GgufFile.AlignmentKey).Value is { } a ? (int)a.AsUInt64() : GgufFile.DefaultAlignment;
        using var counter = new CountingStream();
        using (var w = new BinaryWriter(counter, Encoding.UTF8, leaveOpen: true))
            foreach (var (key, value) in metadata)
            {
                WriteString(w, key);
                w.Write((uint)value.Type);
                WriteValue(w, value, key);
            }
        long header = 24 + counter.Length;
        long data = 0;
        foreach (var (name, dims, type) in tensors)
        {
            header += 8 + Encoding.UTF8.GetByteCount(name) + 4 + 8L * dims.Length + 4 + 8;
            data = GgufFile.Align(data + dims.Skip(1).Aggregate(1L, (x, y) => x * y) * type.RowBytes(dims[0]), alignment);
        }
        return GgufFile.Align(header, alignment) + data;
    }

    /// <summary>A write-only stream that only counts bytes.</summary>
    private sealed class CountingStream : Stream
    {
        private long _length;
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => _length;
        public override long Position { get => _length; set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => _length += count;
        public override void Write(ReadOnlySpan<byte> buffer) => _length += buffer.Length;
        public override void WriteByte(byte value) => _length++;
    }

    /// <summary>Writes the next tensor's bytes (the tensors must come in the order given to <see cref="Create"/>).</summary>
    public void WriteTensor(string name, ReadOnlySpan<byte> data)
    {
        if (_next >= _tensors.Count) throw new InvalidOperationException($"tensor '{name}' is beyond the {_tensors.Count} planned");
        var t = _tensors[_next];
        if (t.Name != name) throw new InvalidOperationException($"expected tensor '{t.Name}' next, got '{name}'");
        if (data.Length != t.ByteLength)
            throw new InvalidOperationException($"tensor '{name}' ({t.Type}, [{string.Join(", ", t.Dimensions)}]) takes {t.ByteLength} bytes, got {data.Length}");
        Pad(_stream, _dataOffset + t.Offset);
        _stream.Write(data);
        _next++;
    }

    /// <summary>Pads the last tensor, flushes to disk and renames the file into place; returns its size.</summary>
    public long Commit()
    {
        if (_next != _tensors.Count) throw new InvalidOperationException($"{_tensors.Count - _next} of {_tensors.Count} tensors were not written");
        if (_tensors.Count > 0)
        {
            var last = _tensors[^1];
            Pad(_stream, GgufFile.Align(_dataOffset + last.Offset + last.ByteLength, _alignment));
        }
        _stream.Flush(flushToDisk: true);
        var size = _stream.Length;
        _stream.Dispose();
        File.Move(_temp, _destination, overwrite: true);
        _committed = true;
        return size;
    }

    public void Dispose()
    {
        if (_committed) return;
        _stream.Dispose();
        try { File.Delete(_temp); } catch (IOException) { }
    }

    private static void Pad(Stream s, long to)
    {
        if (s.Position > to) throw new InvalidOperationException($"stream at {s.Position} is past {to}");
        Span<byte> zeros = stackalloc byte[256];
        zeros.Clear();
        while (s.Position < to) s.Write(zeros[..(int)Math.Min(256, to - s.Position)]);
    }

    private static void WriteString(BinaryWriter w, string s)
    {
        var bytes = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    private static void WriteValue(BinaryWriter w, GgufValue v, string key)
    {
        if (v.Type == GgufValueType.Array)
        {
            var element = v.ElementType ?? throw new ArgumentException($"array value of '{key}' has no element type");
            var a = (Array)v.Value;
            w.Write((uint)element);
            w.Write((ulong)a.Length);
            foreach (var item in a) WriteScalar(w, element, item!, key);
            return;
        }
        WriteScalar(w, v.Type, v.Value, key);
    }

    private static void WriteScalar(BinaryWriter w, GgufValueType t, object o, string key)
    {
        switch (t)
        {
            case GgufValueType.UInt8: w.Write((byte)o); break;
            case GgufValueType.Int8: w.Write((sbyte)o); break;
            case GgufValueType.UInt16: w.Write((ushort)o); break;
            case GgufValueType.Int16: w.Write((short)o); break;
            case GgufValueType.UInt32: w.Write((uint)o); break;
            case GgufValueType.Int32: w.Write((int)o); break;
            case GgufValueType.Float32: w.Write((float)o); break;
            case GgufValueType.Bool: w.Write((bool)o ? (byte)1 : (byte)0); break;
            case GgufValueType.String: WriteString(w, (string)o); break;
            case GgufValueType.UInt64: w.Write((ulong)o); break;
            case GgufValueType.Int64: w.Write((long)o); break;
            case GgufValueType.Float64: w.Write((double)o); break;
            default: throw new ArgumentException($"value of '{key}': type {t} cannot be written");
        }
    }
}
