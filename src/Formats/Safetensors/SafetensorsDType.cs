namespace MoECompress.Formats.Safetensors;

/// <summary>Element types the safetensors format defines (names as they appear in the header).</summary>
public enum SafetensorsDType
{
    BOOL, U8, I8, I16, U16, I32, U32, I64, U64, F16, BF16, F32, F64, F8_E4M3, F8_E5M2,
}
