using MoECompress.Compression.Calibration;
using MoECompress.Compression.Pruning;

namespace MoECompress.Compression.Pipeline;

/// <summary>Removes the least important routed experts (the <c>prune</c> command; <see cref="Pruner"/>).</summary>
public sealed record PruneStep : CompressionStep
{
    /// <inheritdoc />
    public override string Kind => "prune";
    /// <inheritdoc />
    public override bool ChangesExperts => true;

    /// <summary>Fraction of routed experts removed per layer (give this or <see cref="Keep"/>).</summary>
    public double? Ratio { get; init; }
    /// <summary>Routed experts kept per layer.</summary>
    public int? Keep { get; init; }
    /// <summary>Importance method; null = <see cref="Pruner.DefaultMethod"/>.</summary>
    public string? Method { get; init; }
    /// <summary>Rank experts across layers, then equalise the per-layer count.</summary>
    public bool Global { get; init; }
    /// <summary>Allow removing super experts.</summary>
    public bool AllowSuperExperts { get; init; }
    /// <summary>Recipe key <c>propagate</c>: see <see cref="PruneOptions.Propagate"/> (null: compressed where possible).</summary>
    public Quantization.Propagation? Propagate { get; init; }

    /// <summary>The <see cref="PruneOptions"/> of this step on <paramref name="model"/>.</summary>
    public PruneOptions ToOptions(string model, string? output, ProfileRequest profile, bool dryRun = false) => new()
    {
        Model = model, Output = output, Ratio = Ratio, Keep = Keep, Method = Method, Global = Global,
        AllowSuperExperts = AllowSuperExperts, Propagate = Propagate, Profile = profile, DryRun = dryRun,
    };
}
