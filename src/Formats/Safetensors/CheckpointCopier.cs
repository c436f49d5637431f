using System.Diagnostics;
using MoECompress.Formats.Errors;

namespace MoECompress.Formats.Safetensors;

/// <summary>
/// Rewrites a checkpoint unchanged through <see cref="SafetensorsCheckpoint"/> and <see cref="CheckpointWriter"/>:
/// the same tensors in the same order with the same metadata (and, by default, the same shard files). Used by the
/// round-trip tests and the IO benchmark, and as the skeleton of every command that rewrites a checkpoint.
/// </summary>
/// <remarks>
/// With <see cref="CheckpointCopyOptions.KeepShardLayout"/>, each output shard is byte-identical to its input when the
/// input was written in the reference layout (header entries in data order, compact JSON, space padding to 8 bytes —
/// what the safetensors library and this writer produce). Inputs with another header style come out equivalent
/// (same tensors, bytes and metadata) but with a normalised header.
/// </remarks>
public static class CheckpointCopier
{
    /// <summary>Opens <paramref name="source"/> (directory, index or file) and copies it to <paramref name="destination"/>.</summary>
    /// <exception cref="CheckpointFormatException">The input is malformed.</exception>
    /// <exception cref="MoeCompressException">The destination exists, is the source, or cannot be written.</exception>
    public static CheckpointCopyResult Copy(string source, string destination, CheckpointCopyOptions? options = null,
        IProgress<CheckpointCopyProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        using var input = SafetensorsCheckpoint.Open(source);
        return Copy(input, destination, options, progress, cancellationToken);
    }

    /// <summary>Copies an open checkpoint to <paramref name="destination"/>.</summary>
    public static CheckpointCopyResult Copy(SafetensorsCheckpoint input, string destination, CheckpointCopyOptions? options = null,
        IProgress<CheckpointCopyProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(input);
        options ??= new CheckpointCopyOptions();
        var clock = Stopwatch.StartNew();
        string dest = Path.TrimEndingDirectorySeparator(Path.GetFullPath(destination));
        string inputDir = Path.TrimEndingDirectorySeparator(input.Directory);
        if (string.Equals(dest, inputDir, StringComparison.Ordinal) ||
            inputDir.StartsWith(dest + Path.DirectorySeparatorChar, StringComparison.Ordinal))
            throw new MoeCompressException(ErrorKind.Usage, $"{dest}: the destination is (or contains) the source checkpoint");

        var (plan, writerOptions) = options.KeepShardLayout ? SameLayout(input, options.Writer) : Resharded(input, options.Writer);

        using var writer = CheckpointWriter.Create(dest, plan, writerOptions);
        long copied = 0;
        for (int i = 0; i < plan.Count; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            string name = plan[i].Name;
            writer.CopyTensorFrom(name, input.GetFile(name), name, cancellationToken);
            copied += plan[i].ByteLength;
            progress?.Report(new CheckpointCopyProgress(copied, writer.TotalTensorBytes, i + 1, plan.Count, name));
        }
        IReadOnlyList<string> aux = options.CopyAuxiliaryFiles
            ? writer.CopyAuxiliaryFiles(input.Directory, cancellationToken: cancellationToken)
            : Array.Empty<string>();
        writer.Commit(cancellationToken);
        return new CheckpointCopyResult(dest, plan.Count, writer.TotalTensorBytes, writer.Shards, aux, clock.Elapsed);
    }

    /// <summary>Plan and layout reproducing the input's shards: same file names, tensors in data order, same metadata.</summary>
    private static (List<TensorSpec>, CheckpointWriterOptions) SameLayout(SafetensorsCheckpoint input, CheckpointWriterOptions writer)
    {
        var plan = new List<TensorSpec>(input.Names.Count);
        var layout = new List<ShardLayout>(input.ShardFiles.Count);
        foreach (var file in input.ShardFiles)
        {
            var inDataOrder = new TensorInfo[file.Tensors.Count];
            for (int i = 0; i < inDataOrder.Length; i++) inDataOrder[i] = file.Tensors[i];
            Array.Sort(inDataOrder, static (a, b) =>
            {
                int c = a.DataBegin.CompareTo(b.DataBegin);
                return c != 0 ? c : a.DataEnd.CompareTo(b.DataEnd);
            });
            var names = new string[inDataOrder.Length];
            for (int i = 0; i < names.Length; i++)
            {
                names[i] = inDataOrder[i].Name;
                plan.Add(TensorSpec.From(inDataOrder[i]));
            }
            layout.Add(new ShardLayout(Path.GetFileName(file.Path), names)
            {
                Metadata = new Dictionary<string, string>(file.Metadata, StringComparer.Ordinal),
            });
        }
        return (plan, writer with { Layout = layout, WriteIndex = input.IsSharded });
    }

    /// <summary>Plan in the input's tensor order, sharded by the writer's size cap, metadata of the first input shard.</summary>
    private static (List<TensorSpec>, CheckpointWriterOptions) Resharded(SafetensorsCheckpoint input, CheckpointWriterOptions writer)
    {
        var plan = new List<TensorSpec>(input.Names.Count);
        foreach (var name in input.Names) plan.Add(TensorSpec.From(input.GetInfo(name)));
        var first = input.ShardFiles[0];
        var options = writer.Metadata is null && first.HasMetadata
            ? writer with { Metadata = new Dictionary<string, string>(first.Metadata, StringComparer.Ordinal) }
            : writer;
        return (plan, options);
    }
}
