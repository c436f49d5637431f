namespace MoECompress.Formats.Gguf;

/// <summary>
/// The ggml tensor types this toolkit writes and reads, with the numbers GGUF stores (ggml.h <c>enum ggml_type</c>).
/// </summary>
public enum GgmlType : uint
{
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    BF16 = 30,
}
