namespace MoECompress.Compression.Evaluation;

/// <summary>
/// Options of <see cref="Evaluator.RunAsync"/> (the <c>moe-compress eval</c> command): the model, the held-out text,
/// an optional base model to compare against, and the sliding-window settings.
/// </summary>
public sealed record EvaluateOptions
{
    /// <summary>Default window length when neither <see cref="Context"/> nor a smaller model maximum applies.</summary>
    public const int DefaultContext = 512;

    /// <summary>The model folder (config.json, safetensors weights, tokenizer).</summary>
    public required string Model { get; init; }

    /// <summary>
    /// Held-out text: a .txt or .jsonl file (with "text" or "input_ids"), or a folder of them. Null: the bundled
    /// held-out text (<c>calibration/heldout</c>, see <see cref="BundledData"/>).
    /// </summary>
    public string? Data { get; init; }

    /// <summary>
    /// A base model folder to compare against (mean KL, top-1 agreement, per-layer hidden-state error), or null. It must
    /// have the same vocabulary; it may differ in expert count. The text is tokenized with <see cref="Model"/>'s tokenizer.
    /// </summary>
    public string? Base { get; init; }

    /// <summary>Tokens per window; null: <see cref="DefaultContext"/>, or the model's max_position_embeddings when smaller.</summary>
    public int? Context { get; init; }

    /// <summary>Tokens between window starts (1 … Context); null: Context / 2.</summary>
    public int? Stride { get; init; }

    /// <summary>Use only the first MaxTokens tokens of the stream (null: all).</summary>
    public int? MaxTokens { get; init; }

    /// <summary>Tokens pushed through a decoder layer at once (windows of equal length are batched; null: 2048).</summary>
    public int? MicroBatch { get; init; }

    /// <summary>Start the token stream with BOS when the tokenizer has one (as the usual WikiText-2 evaluation does; default true).</summary>
    public bool AddBos { get; init; } = true;

    /// <summary>Hidden states larger than this many bytes are kept in a temporary file (null: the engine's default, 4 GiB per model).</summary>
    public long? MaxResidentHiddenStateBytes { get; init; }

    /// <summary>Folder for hidden-state spill files (null: the system temp folder).</summary>
    public string? SpillDirectory { get; init; }

    /// <summary>A dynamic expert-skipping plan (<c>moe-compress skip-plan</c>) applied to <see cref="Model"/> (not to the base), or null.</summary>
    public string? SkipPlan { get; init; }
}
