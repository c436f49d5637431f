namespace MoECompress.Formats.Fuzzing;

/// <summary>Which parser a fuzz input is fed to.</summary>
public enum FuzzInputKind
{
    /// <summary>A safetensors file's first bytes: the 8-byte length prefix and the JSON header.</summary>
    SafetensorsHeader,
    /// <summary><c>model.safetensors.index.json</c>.</summary>
    Index,
    /// <summary><c>config.json</c>, read, detected, checked against the checkpoint's tensors and inspected.</summary>
    Config,
}
