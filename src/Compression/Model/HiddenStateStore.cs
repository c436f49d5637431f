using MoECompress.Formats.Errors;
using static TorchSharp.torch;

namespace MoECompress.Compression.Model;

/// <summary>
/// The hidden states [L_i, H] (float32) of every sequence between two layers: in RAM, or in a temporary file (deleted
/// on dispose) when their total size exceeds a limit. Each sequence has a fixed slot and is overwritten in place
/// after each layer, so memory does not grow with the number of layers.
/// </summary>
internal sealed class HiddenStateStore : IDisposable
{
    private readonly IReadOnlyList<int> _lengths;
    private readonly long _hidden;
    private readonly Tensor?[]? _ram;
    private readonly long[]? _offsets;
    private readonly FileStream? _file;

    public HiddenStateStore(IReadOnlyList<int> lengths, long hidden, long maxResidentBytes, string? spillDirectory)
    {
        _lengths = lengths;
        _hidden = hidden;
        TotalBytes = lengths.Sum(l => (long)l * hidden * sizeof(float));
        if (TotalBytes <= maxResidentBytes)
        {
            _ram = new Tensor?[lengths.Count];
            return;
        }
        _offsets = new long[lengths.Count];
        long offset = 0;
        for (var i = 0; i < lengths.Count; i++)
        {
            _offsets[i] = offset;
            offset += (long)lengths[i] * hidden * sizeof(float);
        }
        var dir = spillDirectory ?? Path.GetTempPath();
        SpillPath = Path.Combine(dir, $"moe-compress-hidden-{Environment.ProcessId}-{Guid.NewGuid():N}.bin");
        try
        {
            _file = new FileStream(SpillPath, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1,
                FileOptions.DeleteOnClose | FileOptions.RandomAccess);
            _file.SetLength(TotalBytes);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            _file?.Dispose();
            throw new MoeCompressException(ErrorKind.Io,
                $"{SpillPath}: cannot create the {TotalBytes / (1 << 20)} MiB hidden-state spill file: {ex.Message}", ex);
        }
    }

    public long TotalBytes { get; }
    public bool Spilled => _file is not null;
    /// <summary>Path of the spill file (null when in RAM).</summary>
    public string? SpillPath { get; }

    /// <summary>Stores the hidden states [L, H] of one sequence (copied).</summary>
    public void Write(int sequence, Tensor states)
    {
        if (states.shape[0] != _lengths[sequence] || states.shape[1] != _hidden)
            throw new ArgumentException($"sequence {sequence}: expected [{_lengths[sequence]}, {_hidden}], got [{string.Join(", ", states.shape)}]");
        if (_ram is not null)
        {
            if (_ram[sequence] is { } slot) slot.copy_(states);
            else _ram[sequence] = states.to(ScalarType.Float32).cpu().clone().DetachFromDisposeScope();
            return;
        }
        using var scope = NewDisposeScope();
        var c = states.to(ScalarType.Float32).cpu().contiguous();
        try
        {
            RandomAccess.Write(_file!.SafeFileHandle, c.bytes, _offsets![sequence]);
        }
        catch (IOException ex)
        {
            throw new MoeCompressException(ErrorKind.Io, $"{SpillPath}: writing hidden states failed: {ex.Message}", ex);
        }
    }

    /// <summary>A new tensor [L, H] with the stored hidden states of one sequence.</summary>
    public Tensor Read(int sequence)
    {
        if (_ram is not null)
            return (_ram[sequence] ?? throw new InvalidOperationException($"sequence {sequence} has no hidden states yet")).clone();
        var t = empty(_lengths[sequence], _hidden, ScalarType.Float32);
        var span = t.bytes;
        var handle = _file!.SafeFileHandle;
        long offset = _offsets![sequence];
        var done = 0;
        while (done < span.Length)
        {
            var n = RandomAccess.Read(handle, span[done..], offset + done);
            if (n <= 0) throw new MoeCompressException(ErrorKind.Io, $"{SpillPath}: hidden-state spill file ended early");
            done += n;
        }
        return t;
    }

    /// <summary>[B, L, H] for sequences of equal length (new tensor).</summary>
    public Tensor Gather(IReadOnlyList<int> sequences)
    {
        using var scope = NewDisposeScope();
        var parts = sequences.Select(Read).ToArray();
        return stack(parts, 0).MoveToOuterDisposeScope();
    }

    /// <summary>Stores [B, L, H] back into the slots of <paramref name="sequences"/>.</summary>
    public void Scatter(IReadOnlyList<int> sequences, Tensor states)
    {
        using var scope = NewDisposeScope();
        for (var b = 0; b < sequences.Count; b++) Write(sequences[b], states[b]);
    }

    /// <summary>Writes every sequence's hidden states, in order, to <paramref name="stream"/> (float32, little-endian).</summary>
    public void SaveTo(Stream stream)
    {
        for (var s = 0; s < _lengths.Count; s++)
        {
            using var t = Read(s);
            using var c = t.contiguous();
            stream.Write(c.bytes);
        }
    }

    /// <summary>Replaces every sequence's hidden states with those <see cref="SaveTo"/> wrote.</summary>
    public void LoadFrom(Stream stream, string what)
    {
        for (var s = 0; s < _lengths.Count; s++)
        {
            using var t = empty(_lengths[s], _hidden, ScalarType.Float32);
            try
            {
                stream.ReadExactly(t.bytes);
            }
            catch (EndOfStreamException ex)
            {
                throw new MoeCompressException(ErrorKind.Io, $"{what}: ends before the hidden states of sequence {s}", ex);
            }
            Write(s, t);
        }
    }

    public void Dispose()
    {
        if (_ram is not null)
            foreach (var t in _ram) t?.Dispose();
        _file?.Dispose();
    }
}
