namespace MoECompress.Compression.Importance;

/// <summary>A cluster of experts of one layer and the member that represents it (the one a pruned layer keeps).</summary>
/// <param name="Representative">Original index of the kept member.</param>
/// <param name="Members">Original indices of every member, ascending.</param>
public sealed record CoselectionCluster(int Representative, IReadOnlyList<int> Members);
