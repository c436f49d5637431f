namespace MoECompress.Compression.Evaluation;

/// <summary>Which model a report is about: its folder, family and routed expert count.</summary>
/// <param name="Path">Full path of the model folder.</param>
/// <param name="Family">Family adapter name (mixtral, qwen2_moe, ...).</param>
/// <param name="Experts">Routed experts per MoE layer.</param>
/// <param name="Layers">Decoder layers.</param>
/// <param name="WeightBytes">Bytes of tensor data in its safetensors files.</param>
public sealed record EvaluatedModel(string Path, string Family, int Experts, int Layers, long WeightBytes);
