namespace MoECompress.Compression.Model;

/// <summary>Which part of a streaming run is in progress.</summary>
public enum StreamingStage
{
    /// <summary>Looking up token embeddings.</summary>
    Embedding,
    /// <summary>Loading a decoder layer's weights.</summary>
    LoadingLayer,
    /// <summary>Running sequences through a decoder layer.</summary>
    Layer,
    /// <summary>Final norm and lm_head.</summary>
    Head,
}

/// <summary>Progress of a streaming run: the stage, the layer (for layer stages) and how many sequences are done in it.</summary>
public sealed record StreamingProgress(StreamingStage Stage, int? Layer, int NumLayers, int SequencesDone, int SequencesTotal)
{
    public override string ToString() => Stage switch
    {
        StreamingStage.LoadingLayer => $"loading layer {Layer + 1}/{NumLayers}",
        StreamingStage.Layer => $"layer {Layer + 1}/{NumLayers}: {SequencesDone}/{SequencesTotal} sequences",
        _ => $"{Stage.ToString().ToLowerInvariant()}: {SequencesDone}/{SequencesTotal} sequences",
    };
}
