using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace MoECompress.Tests.Safetensors;

/// <summary>
/// Builds and splits safetensors bytes independently of the library (used as the oracle in reader tests and by
/// <see cref="CheckpointCorruptor"/>). <see cref="Build"/> follows the reference writer's layout: compact JSON,
/// <c>__metadata__</c> first, entries in data order, spaces up to a multiple of 8.
/// </summary>
public static class RawSafetensors
{
    public sealed record Entry(string Name, string DType, long[] Shape, byte[] Data);

    public static byte[] Build(IReadOnlyList<Entry> entries, IReadOnlyDictionary<string, string>? metadata, bool pad = true)
    {
        using var json = new MemoryStream();
        using (var w = new Utf8JsonWriter(json, new JsonWriterOptions { Indented = false }))
        {
            w.WriteStartObject();
            if (metadata is not null)
            {
                w.WriteStartObject("__metadata__");
                foreach (var kv in metadata) w.WriteString(kv.Key, kv.Value);
                w.WriteEndObject();
            }
            long offset = 0;
            foreach (var e in entries)
            {
                w.WriteStartObject(e.Name);
                w.WriteString("dtype", e.DType);
                w.WriteStartArray("shape");
                foreach (var d in e.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + e.Data.Length);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += e.Data.Length;
            }
            w.WriteEndObject();
        }
        var data = new MemoryStream();
        foreach (var e in entries) data.Write(e.Data);
        return FromHeaderBytes(json.ToArray(), data.ToArray(), pad);
    }

    /// <summary>Prefix + header text (padded with spaces to a multiple of 8 when <paramref name="pad"/>) + data.</summary>
    public static byte[] FromHeaderText(string headerJson, byte[] data, bool pad = true) =>
        FromHeaderBytes(Encoding.UTF8.GetBytes(headerJson), data, pad);

    public static byte[] FromHeaderBytes(byte[] header, byte[] data, bool pad = true)
    {
        int padded = pad ? (header.Length + 7) / 8 * 8 : header.Length;
        var file = new byte[8 + padded + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)padded);
        header.CopyTo(file, 8);
        file.AsSpan(8 + header.Length, padded - header.Length).Fill((byte)' ');
        data.CopyTo(file, 8 + padded);
        return file;
    }

    /// <summary>Header bytes (with padding) and data bytes of a well-formed file.</summary>
    public static (byte[] Header, byte[] Data) Split(byte[] file)
    {
        long n = (long)BinaryPrimitives.ReadUInt64LittleEndian(file);
        return (file.AsSpan(8, (int)n).ToArray(), file.AsSpan(8 + (int)n).ToArray());
    }

    /// <summary>Bytes of little-endian values.</summary>
    public static byte[] Bytes<T>(params T[] values) where T : unmanaged =>
        System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
}
