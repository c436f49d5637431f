using MoECompress.Formats.Errors;
using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Compression.Substitution;

/// <summary>Where compressed-expert training runs: <c>cpu</c>, <c>cuda</c>, or <c>auto</c> (CUDA when libtorch sees one).</summary>
public static class TrainingDevice
{
    /// <summary>Accepted names.</summary>
    public static IReadOnlyList<string> Names { get; } = ["auto", "cpu", "cuda"];

    /// <summary>
    /// The device for <paramref name="name"/>. Usage error for an unknown name or for <c>cuda</c> when TorchSharp sees no
    /// CUDA device (the default build references the CPU libtorch; build with <c>-p:MoeTorchBackend=cuda-linux</c>).
    /// </summary>
    public static Device Resolve(string? name)
    {
        var n = (name ?? "auto").Trim().ToLowerInvariant();
        switch (n)
        {
            case "cpu":
                return CPU;
            case "auto":
                return IsCudaAvailable() ? CUDA : CPU;
            case "cuda":
                if (!IsCudaAvailable())
                    throw new MoeCompressException(ErrorKind.Usage,
                        "--device cuda: TorchSharp sees no CUDA device (this build uses the CPU libtorch unless built with -p:MoeTorchBackend=cuda-linux)");
                return CUDA;
            default:
                throw new MoeCompressException(ErrorKind.Usage, $"--device {name}: must be one of {string.Join(", ", Names)}");
        }
    }

    private static bool IsCudaAvailable()
    {
        try
        {
            return torch.cuda.is_available();
        }
        catch (Exception e) when (e is TypeInitializationException or DllNotFoundException or NotSupportedException)
        {
            return false;
        }
    }
}
