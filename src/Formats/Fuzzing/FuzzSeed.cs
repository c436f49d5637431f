using MoECompress.Formats.Safetensors;

namespace MoECompress.Formats.Fuzzing;

/// <summary>
/// One valid input that fuzzing starts from, with what its parser needs besides the bytes: the data-section length
/// after a header, the (unmutated) tensors a config is checked against.
/// </summary>
/// <param name="Kind">The parser.</param>
/// <param name="Name">Where it came from ("mixtral/config.json"), for reports.</param>
/// <param name="Path">The file path errors name.</param>
/// <param name="Bytes">The valid input.</param>
/// <param name="DataLength">For a header: bytes of tensor data after it in the real file.</param>
/// <param name="Tensors">For a config: the checkpoint's tensors (headers only are read).</param>
public sealed record FuzzSeed(FuzzInputKind Kind, string Name, string Path, byte[] Bytes, long DataLength = 0,
    ITensorSource? Tensors = null);
