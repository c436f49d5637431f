using MoECompress.Compression.Calibration;
using MoECompress.Compression.Importance;
using MoECompress.Compression.Quantization;

namespace MoECompress.Compression.Pruning;

/// <summary>
/// Options of <see cref="Pruner.Run"/> (the <c>moe-compress prune</c> command): which model, how many routed experts to
/// remove (<see cref="Ratio"/> or <see cref="Keep"/>), by which importance method, from which calibration profile, and
/// where to write the pruned checkpoint.
/// </summary>
public sealed record PruneOptions
{
    /// <summary>The input checkpoint folder (never modified).</summary>
    public required string Model { get; init; }

    /// <summary>The output checkpoint folder; required unless <see cref="DryRun"/>.</summary>
    public string? Output { get; init; }

    /// <summary>Fraction of routed experts removed per MoE layer, 0 &lt; R &lt; 1: E' = E − round(R·E) (with
    /// <see cref="Global"/>, a fraction of all routed experts of all MoE layers). Give this or <see cref="Keep"/>.</summary>
    public double? Ratio { get; init; }

    /// <summary>E': routed experts kept in every MoE layer (with <see cref="Global"/>: on average). Give this or <see cref="Ratio"/>.</summary>
    public int? Keep { get; init; }

    /// <summary>Importance method (one of <see cref="ExpertScorers.Names"/>); null: <see cref="Pruner.DefaultMethod"/>.</summary>
    public string? Method { get; init; }

    /// <summary>
    /// Where the calibration statistics come from: a saved profile (<see cref="ProfileRequest.Profile"/>; a profile
    /// calibrated on one task's text keeps that task's experts, PreMoe-style) or a calibration run in memory. NAEE also
    /// streams the request's data (<see cref="ProfileRequest.Data"/>, Samples, SeqLen, Seed; null data = the bundled set)
    /// through the model.
    /// </summary>
    public ProfileRequest Profile { get; init; } = new();

    /// <summary>
    /// Rank experts across layers (scores normalised per layer, <see cref="ExpertScores.Normalized"/>) instead of removing
    /// the same number everywhere; the per-layer counts are then equalised to their maximum so stock runtimes can load
    /// the result (the report says what that costs).
    /// </summary>
    public bool Global { get; init; }

    /// <summary>
    /// What feeds layer l+1 while the statistics are collected. <see cref="Propagation.Compressed"/>: the pruned layer
    /// l's outputs (a sequential pass that decides each layer before measuring the next; see
    /// <see cref="SequentialPrunePass"/>); <see cref="Propagation.Original"/>: the original model's (one calibration pass,
    /// then every decision). Null (the default): compressed when the statistics are collected by this run from
    /// <see cref="ProfileRequest.Data"/> with a method that needs no model run of its own and without
    /// <see cref="Global"/>; original otherwise (a saved profile holds the original model's statistics).
    /// </summary>
    public Propagation? Propagate { get; init; }

    /// <summary>Continue an interrupted run with compressed propagation from its journal (the layers it finished are not
    /// run again; the output is byte-identical to an uninterrupted run's). Without it a leftover journal is an error.</summary>
    public bool Resume { get; init; }

    /// <summary>Allow removing super experts (by default they are protected).</summary>
    public bool AllowSuperExperts { get; init; }

    /// <summary>Replace an existing output folder.</summary>
    public bool Overwrite { get; init; }

    /// <summary>Compute and report the plan, write nothing.</summary>
    public bool DryRun { get; init; }

    /// <summary>NAEE: largest number of expert subsets per layer searched exhaustively (greedy beyond).</summary>
    public long NaeeExhaustiveLimit { get; init; } = NaeeScorer.DefaultExhaustiveLimit;

    /// <summary>Most tensor bytes per output shard.</summary>
    public long MaxShardBytes { get; init; } = 5_000_000_000;
}
