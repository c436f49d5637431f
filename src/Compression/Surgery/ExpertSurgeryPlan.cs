namespace MoECompress.Compression.Surgery;

/// <summary>
/// What to do with the routed experts of every MoE layer (decoder and MTP layers): the output experts in their new
/// order (index = new expert number). Every routed layer must be listed and all must have the same count (Hugging Face
/// configs hold one expert count). Everything else in the checkpoint is copied unchanged.
/// </summary>
public sealed record ExpertSurgeryPlan
{
    /// <summary>Routed layer index (MTP layers numbered after the decoder layers) → its output experts.</summary>
    public required IReadOnlyDictionary<int, IReadOnlyList<OutputExpert>> Layers { get; init; }

    /// <summary>Source of merged weights; required when any output expert has <see cref="OutputExpert.Merged"/>.</summary>
    public IMergedExpertWeights? Weights { get; init; }

    /// <summary>The operation's name for the manifest ("prune", "merge").</summary>
    public required string Operation { get; init; }

    /// <summary>The common expert count E' of the output.</summary>
    public int OutputExperts => Layers.Count == 0 ? 0 : Layers.Values.First().Count;
}
