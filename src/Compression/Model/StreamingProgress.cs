using MoECompress.Compression.Reporting;

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

    /// <summary>
    /// The same progress as a <see cref="ProgressUpdate"/> of stage <paramref name="stage"/>: the fraction counts the
    /// whole run (layers done plus the share of sequences of the current layer).
    /// </summary>
    public ProgressUpdate ToUpdate(string stage, string label = "")
    {
        double layers = Math.Max(1, NumLayers);
        double within = SequencesTotal == 0 ? 1 : (double)SequencesDone / SequencesTotal;
        double done = Stage switch
        {
            StreamingStage.Embedding => 0,
            StreamingStage.LoadingLayer => Layer ?? 0,
            StreamingStage.Layer => (Layer ?? 0) + within,
            _ => layers,
        };
        return new ProgressUpdate(stage, label + ToString())
        {
            Layer = Layer, NumLayers = NumLayers, Done = (long)Math.Round(done * 1000), Total = (long)(layers * 1000), Unit = "layers",
        };
    }
}
