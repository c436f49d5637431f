namespace MoECompress.Compression.Merging;

/// <summary>How the experts of a MoE layer are grouped into the clusters that are merged.</summary>
public enum ClusteringMethod
{
    /// <summary>HC-SMoE: agglomerative clustering with average linkage on the Euclidean distance of the experts' mean outputs.</summary>
    Hierarchical,
    /// <summary>Sub-MoE: spherical k-means (cosine similarity of the mean outputs) with k-means++ seeding and a fixed seed.</summary>
    KMeans,
}
