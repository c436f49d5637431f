namespace MoECompress.Compression.Calibration;

/// <summary>Options of <see cref="Calibrator.RunAsync"/> (the <c>calibrate</c> command).</summary>
public sealed record CalibrateOptions
{
    /// <summary>Model folder (config.json, safetensors weights, tokenizer).</summary>
    public required string Model { get; init; }

    /// <summary>
    /// Calibration text: a .txt or .jsonl file ("text" or "input_ids" per line) or a folder of them. Null uses the
    /// bundled calibration set (<see cref="BundledData.LocateCalibrationSet"/>).
    /// </summary>
    public string? Data { get; init; }

    /// <summary>Number of sequences (null or 0: every non-overlapping window of the data). Default 128.</summary>
    public int? Samples { get; init; } = 128;

    /// <summary>Tokens per sequence (BOS included when the tokenizer has one). Default 512.</summary>
    public int SeqLen { get; init; } = 512;

    /// <summary>Seed of the window draw.</summary>
    public int Seed { get; init; }

    /// <summary>Profile folder to create. Null: "&lt;model folder name&gt;-calibration" in the current directory.</summary>
    public string? Out { get; init; }

    /// <summary>Replace an existing <see cref="Out"/> folder.</summary>
    public bool Overwrite { get; init; }

    /// <summary>Continue an interrupted calibration from its journal (<c>.&lt;out&gt;.calibrate-journal</c> beside the
    /// profile folder: the hidden states and statistics after each finished MoE layer); the profile's statistics are
    /// byte-identical to an uninterrupted run's. Without it a leftover journal is an error naming it.</summary>
    public bool Resume { get; init; }

    /// <summary>Also write every token's raw router logits (router-logits/router_logits.safetensors).</summary>
    public bool DumpRouterLogits { get; init; }


    /// <summary>Record each expert's mean output over all tokens as well (E/k times the expert compute).</summary>
    public bool MeanOutputOverAllTokens { get; init; }

    /// <summary>Routed-token count below which an expert is cold; null: max(16, 0.1·N·k/E).</summary>
    public double? ColdThreshold { get; init; }

    /// <summary>Tokens per micro-batch pushed through a layer at once. Default 2048.</summary>
    public int MicroBatch { get; init; } = 2048;

    /// <summary>Folder for spilled hidden states when they exceed <see cref="MaxResidentHiddenStateBytes"/> (default: system temp).</summary>
    public string? SpillDirectory { get; init; }

    /// <summary>Hidden states larger than this (bytes) go to a temporary file. Default 4 GiB.</summary>
    public long MaxResidentHiddenStateBytes { get; init; } = 4L << 30;
}
