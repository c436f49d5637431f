using System.IO.MemoryMappedFiles;
using System.Text;
using MoECompress.Formats.Errors;

namespace MoECompress.Formats.Gguf;

/// <summary>
/// A GGUF (version 2 or 3) file opened for reading: the typed metadata and tensor infos parsed from the header, the
/// tensor data memory-mapped. Errors name the file, the key or tensor, and the byte offset. Dispose to unmap.
/// </summary>
public sealed unsafe class GgufFile : IDisposable
{
    /// <summary>"GGUF" as a little-endian uint32.</summary>
    public const uint Magic = 0x46554747;
    /// <summary>Alignment of the data section and of every tensor when <c>general.alignment</c> is absent.</summary>
    public const int DefaultAlignment = 32;
    public const string AlignmentKey = "general.alignment";

    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private readonly byte* _base;
    private readonly Dictionary<string, GgufTensorInfo> _byName;

    public string Path { get; }
    public uint Version { get; }
    /// <summary>Metadata in file order.</summary>
    public IReadOnlyList<KeyValuePair<string, GgufValue>> Metadata { get; }
    /// <summary>Tensor infos in file order.</summary>
    public IReadOnlyList<GgufTensorInfo> Tensors { get; }
    public int Alignment { get; }
    /// <summary>Byte offset of the data section in the file.</summary>
    public long DataOffset { get; }
    public long FileLength { get; }

    private readonly Dictionary<string, GgufValue> _metadata;

    private GgufFile(string path, uint version, List<KeyValuePair<string, GgufValue>> metadata, List<GgufTensorInfo> tensors,
        int alignment, long dataOffset, long length)
    {
        Path = path;
        Version = version;
        Metadata = metadata;
        Tensors = tensors;
        Alignment = alignment;
        DataOffset = dataOffset;
        FileLength = length;
        _metadata = metadata.ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
        _byName = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
        if (length > dataOffset)
        {
            _map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
            _view = _map.CreateViewAccessor(0, length, MemoryMappedFileAccess.Read);
            byte* p = null;
            _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            _base = p + _view.PointerOffset;
        }
    }

    /// <summary>Opens and validates <paramref name="path"/>: magic, version, every key and tensor info, alignment, that
    /// tensors lie inside the file without overlapping. Throws <see cref="CheckpointFormatException"/> otherwise.</summary>
    public static GgufFile Open(string path)
    {
        path = System.IO.Path.GetFullPath(path);
        if (!File.Exists(path)) throw new MoeCompressException(ErrorKind.Usage, $"{path}: GGUF file not found");
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        var length = stream.Length;
        using var reader = new BinaryReader(stream, Encoding.UTF8, leaveOpen: true);
        CheckpointFormatException Bad(string problem, string? name = null) => new(path, name, stream.Position, problem);
        try
        {
            if (length < 24 || reader.ReadUInt32() != Magic) throw Bad("not a GGUF file (magic 'GGUF' missing)");
            var version = reader.ReadUInt32();
            if (version is not (2 or 3)) throw Bad($"GGUF version {version}; versions 2 and 3 are read");
            var tensorCount = reader.ReadUInt64();
            var kvCount = reader.ReadUInt64();
            if (tensorCount > (ulong)length / 8 || kvCount > (ulong)length / 8) throw Bad($"header counts {tensorCount} tensors / {kvCount} keys exceed the file");
            var metadata = new List<KeyValuePair<string, GgufValue>>((int)kvCount);
            var seen = new HashSet<string>(StringComparer.Ordinal);
            for (ulong i = 0; i < kvCount; i++)
            {
                var key = ReadString(reader, length, Bad);
                if (!seen.Add(key)) throw Bad("duplicate metadata key", key);
                var type = (GgufValueType)reader.ReadUInt32();
                metadata.Add(new(key, ReadValue(reader, type, length, Bad, key)));
            }
            var alignment = DefaultAlignment;
            var alignmentValue = metadata.FirstOrDefault(kv => kv.Key == AlignmentKey).Value;
            if (alignmentValue is not null)
            {
                if (alignmentValue.Type != GgufValueType.UInt32 || alignmentValue.AsUInt64() is 0 or > 1 << 20 || (alignmentValue.AsUInt64() & (alignmentValue.AsUInt64() - 1)) != 0)
                    throw Bad($"'{AlignmentKey}' must be a UINT32 power of two, got {alignmentValue.Type} {alignmentValue}");
                alignment = (int)alignmentValue.AsUInt64();
            }
            var tensors = new List<GgufTensorInfo>((int)tensorCount);
            var names = new HashSet<string>(StringComparer.Ordinal);
            for (ulong i = 0; i < tensorCount; i++)
            {
                var name = ReadString(reader, length, Bad);
                if (!names.Add(name)) throw Bad("duplicate tensor name", name);
                var nDims = reader.ReadUInt32();
                if (nDims is 0 or > 4) throw Bad($"{nDims} dimensions (1–4 allowed)", name);
                var dims = new long[nDims];
                for (var d = 0; d < nDims; d++)
                {
                    var ne = reader.ReadUInt64();
                    if (ne == 0 || ne > long.MaxValue / 8) throw Bad($"dimension {d} is {ne}", name);
                    dims[d] = (long)ne;
                }
                var type = (GgmlType)reader.ReadUInt32();
                if (!Enum.IsDefined(type)) throw Bad($"ggml type {(uint)type} is not one this toolkit reads ({string.Join(", ", GgmlTypes.All)})", name);
                if (!type.Fits(dims[0])) throw Bad($"row of {dims[0]} elements is not a whole number of {type} blocks", name);
                var offset = reader.ReadUInt64();
                if (offset % (ulong)alignment != 0) throw Bad($"data offset {offset} is not a multiple of the alignment {alignment}", name);
                tensors.Add(new GgufTensorInfo(name, dims, type, (long)offset));
            }
            var dataOffset = Align(stream.Position, alignment);
            var dataLength = length - dataOffset;
            long end = 0;
            foreach (var t in tensors.OrderBy(t => t.Offset))
            {
                if (t.Offset < end) throw new CheckpointFormatException(path, t.Name, dataOffset + t.Offset, "overlaps the previous tensor's data");
                end = t.Offset + t.ByteLength;
                if (end > dataLength)
                    throw new CheckpointFormatException(path, t.Name, dataOffset + t.Offset, $"data ({t.ByteLength} bytes) runs past the end of the file ({length} bytes)");
            }
            return new GgufFile(path, version, metadata, tensors, alignment, dataOffset, length);
        }
        catch (EndOfStreamException)
        {
            throw new CheckpointFormatException(path, null, stream.Position, "truncated GGUF header");
        }
    }

    /// <summary>Rounds <paramref name="offset"/> up to a multiple of <paramref name="alignment"/>.</summary>
    public static long Align(long offset, int alignment) => (offset + alignment - 1) / alignment * alignment;

    public bool ContainsKey(string key) => _metadata.ContainsKey(key);

    /// <summary>The value of <paramref name="key"/>, or null.</summary>
    public GgufValue? Get(string key) => _metadata.GetValueOrDefault(key);

    /// <summary>The value of <paramref name="key"/>, which must exist with type <paramref name="type"/>.</summary>
    public GgufValue Require(string key, GgufValueType type)
    {
        var v = Get(key) ?? throw new CheckpointFormatException(Path, null, null, $"metadata key '{key}' is missing", ErrorKind.InvalidConfig);
        if (v.Type != type) throw new CheckpointFormatException(Path, null, null, $"metadata key '{key}' is {v.Type}, expected {type}", ErrorKind.InvalidConfig);
        return v;
    }

    public bool Contains(string tensor) => _byName.ContainsKey(tensor);

    public GgufTensorInfo GetTensor(string name) => _byName.GetValueOrDefault(name)
        ?? throw new CheckpointFormatException(Path, name, null, "no such tensor in the GGUF file");

    /// <summary>The stored bytes of a tensor (valid while the file is open; ≤ 2 GiB).</summary>
    public ReadOnlySpan<byte> GetBytes(string name)
    {
        var t = GetTensor(name);
        if (t.ByteLength > int.MaxValue) throw new CheckpointFormatException(Path, name, null, "is larger than 2 GiB; read it in rows");
        return t.ByteLength == 0 ? ReadOnlySpan<byte>.Empty : new ReadOnlySpan<byte>(_base + DataOffset + t.Offset, (int)t.ByteLength);
    }

    /// <summary>A tensor dequantized to float32 (row-major, PyTorch shape <see cref="GgufTensorInfo.TorchShape"/>).</summary>
    public float[] Dequantize(string name)
    {
        var t = GetTensor(name);
        var values = new float[t.ElementCount];
        GgmlCodec.DequantizeRows(t.Type, GetBytes(name), t.RowElements, values);
        return values;
    }

    private static string ReadString(BinaryReader r, long fileLength, Func<string, string?, CheckpointFormatException> bad)
    {
        var n = r.ReadUInt64();
        if (n > (ulong)(fileLength - r.BaseStream.Position)) throw bad($"string of {n} bytes runs past the end of the file", null);
        return Encoding.UTF8.GetString(r.ReadBytes((int)n));
    }

    private static GgufValue ReadValue(BinaryReader r, GgufValueType type, long fileLength, Func<string, string?, CheckpointFormatException> bad, string key)
    {
        if (type == GgufValueType.Array)
        {
            var elementType = (GgufValueType)r.ReadUInt32();
            var count = r.ReadUInt64();
            if (count > (ulong)fileLength) throw bad($"array of {count} elements exceeds the file", key);
            var n = (int)count;
            Array values = elementType switch
            {
                GgufValueType.String => new string[n],
                GgufValueType.Array => throw bad("nested arrays are not supported", key),
                _ => Array.CreateInstance(ClrType(elementType) ?? throw bad($"array element type {(uint)elementType} is not a GGUF type", key), n),
            };
            for (var i = 0; i < n; i++)
                values.SetValue(elementType == GgufValueType.String ? ReadString(r, fileLength, bad) : ScalarOf(r, elementType, bad, key), i);
            return new GgufValue(GgufValueType.Array, values, elementType);
        }
        return type == GgufValueType.String
            ? new GgufValue(type, ReadString(r, fileLength, bad))
            : new GgufValue(type, ScalarOf(r, type, bad, key));
    }

    /// <summary>The .NET type that holds a scalar of <paramref name="t"/> (null for strings, arrays and unknown types).</summary>
    internal static Type? ClrType(GgufValueType t) => t switch
    {
        GgufValueType.UInt8 => typeof(byte), GgufValueType.Int8 => typeof(sbyte), GgufValueType.UInt16 => typeof(ushort),
        GgufValueType.Int16 => typeof(short), GgufValueType.UInt32 => typeof(uint), GgufValueType.Int32 => typeof(int),
        GgufValueType.Float32 => typeof(float), GgufValueType.Bool => typeof(bool), GgufValueType.UInt64 => typeof(ulong),
        GgufValueType.Int64 => typeof(long), GgufValueType.Float64 => typeof(double),
        _ => null,
    };

    private static object ScalarOf(BinaryReader r, GgufValueType t, Func<string, string?, CheckpointFormatException> bad, string key) => t switch
    {
        GgufValueType.UInt8 => r.ReadByte(),
        GgufValueType.Int8 => r.ReadSByte(),
        GgufValueType.UInt16 => r.ReadUInt16(),
        GgufValueType.Int16 => r.ReadInt16(),
        GgufValueType.UInt32 => r.ReadUInt32(),
        GgufValueType.Int32 => r.ReadInt32(),
        GgufValueType.Float32 => r.ReadSingle(),
        GgufValueType.Bool => r.ReadByte() switch { 0 => false, 1 => true, var b => throw bad($"BOOL value {b}", key) },
        GgufValueType.UInt64 => r.ReadUInt64(),
        GgufValueType.Int64 => r.ReadInt64(),
        GgufValueType.Float64 => r.ReadDouble(),
        _ => throw bad($"value type {(uint)t} is not a GGUF type", key),
    };

    public void Dispose()
    {
        if (_view is not null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
        }
        _map?.Dispose();
    }
}
