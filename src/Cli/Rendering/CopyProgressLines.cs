using MoECompress.Formats.Safetensors;

namespace MoECompress.Cli.Rendering;

/// <summary>Turns checkpoint-copy progress into a plain line every 10% (and at the end).</summary>
internal sealed class CopyProgressLines(IProgress<string> lines) : IProgress<CheckpointCopyProgress>
{
    private int _lastPercent = -1;

    public void Report(CheckpointCopyProgress p)
    {
        int percent = p.TotalBytes == 0 ? 100 : (int)(100 * p.BytesCopied / p.TotalBytes);
        if (percent / 10 == _lastPercent / 10 && p.TensorsCopied != p.TensorCount) return;
        _lastPercent = percent;
        lines.Report($"written {percent}% ({p.TensorsCopied}/{p.TensorCount} tensors)");
    }
}
