using static TorchSharp.torch;

namespace MoECompress.Compression.Model;

/// <summary>
/// Runs token sequences through a model by streaming its decoder layers (see <see cref="StreamingSession"/>): only one
/// layer's weights are in memory at a time, so peak memory does not grow with the number of layers. Outputs reach the
/// caller as logits chunks (no [N, L, V] tensor is ever built), or through the convenience methods below.
/// </summary>
public sealed class StreamingRunner
{
    public StreamingRunner(ModelEngine engine, StreamingOptions? options = null)
    {
        Engine = engine;
        Options = options ?? new StreamingOptions();
        Options.Validate();
    }

    public ModelEngine Engine { get; }
    public StreamingOptions Options { get; }

    /// <summary>Embeds the sequences and returns a session positioned before layer 0 (dispose it).</summary>
    public StreamingSession Start(IReadOnlyList<IReadOnlyList<int>> sequences, IProgress<StreamingProgress>? progress = null,
        CancellationToken cancellationToken = default) =>
        new(Engine, sequences, Options, progress, cancellationToken);

    /// <summary>
    /// Runs every layer, reporting to <paramref name="observer"/>, then (when <paramref name="onLogits"/> is given)
    /// the head, handing each logits chunk to the callback.
    /// </summary>
    public void Run(IReadOnlyList<IReadOnlyList<int>> sequences, Action<SequenceLogits>? onLogits, ILayerObserver? observer = null,
        IProgress<StreamingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        using var session = Start(sequences, progress, cancellationToken);
        session.RunRemainingLayers(observer, cancellationToken);
        if (onLogits is not null) session.ApplyHead(onLogits, cancellationToken);
    }

    /// <summary><see cref="Run"/> on a worker thread.</summary>
    public Task RunAsync(IReadOnlyList<IReadOnlyList<int>> sequences, Action<SequenceLogits>? onLogits, ILayerObserver? observer = null,
        IProgress<StreamingProgress>? progress = null, CancellationToken cancellationToken = default) =>
        Task.Run(() => Run(sequences, onLogits, observer, progress, cancellationToken), cancellationToken);

    /// <summary>Full logits [L_i, V] per sequence (float32; the caller disposes them). Mind the memory: N·L·V floats.</summary>
    public IReadOnlyList<Tensor> ComputeLogits(IReadOnlyList<IReadOnlyList<int>> sequences, ILayerObserver? observer = null,
        IProgress<StreamingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var parts = sequences.Select(_ => new List<Tensor>()).ToArray();
        try
        {
            Run(sequences, chunk => parts[chunk.SequenceIndex].Add(chunk.Logits.clone().DetachFromDisposeScope()), observer, progress, cancellationToken);
            return parts.Select(p =>
            {
                var joined = p.Count == 1 ? p[0].clone() : cat(p, 0);
                return joined.DetachFromDisposeScope();
            }).ToArray();
        }
        finally
        {
            foreach (var p in parts)
                foreach (var t in p) t.Dispose();
        }
    }

    /// <summary>Full log-probabilities log_softmax(logits) [L_i, V] per sequence (float32; the caller disposes them).</summary>
    public IReadOnlyList<Tensor> ComputeLogProbs(IReadOnlyList<IReadOnlyList<int>> sequences, ILayerObserver? observer = null,
        IProgress<StreamingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var logits = ComputeLogits(sequences, observer, progress, cancellationToken);
        try
        {
            return logits.Select(l => l.log_softmax(-1).DetachFromDisposeScope()).ToArray();
        }
        finally
        {
            foreach (var l in logits) l.Dispose();
        }
    }

    /// <summary>
    /// log p(token[t+1] | tokens[0..t]) for t = 0 … L−2 of each sequence (perplexity); no [L, V] tensor is kept.
    /// </summary>
    public IReadOnlyList<float[]> ComputeNextTokenLogProbs(IReadOnlyList<IReadOnlyList<int>> sequences, ILayerObserver? observer = null,
        IProgress<StreamingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var results = sequences.Select(s => new float[Math.Max(0, s.Count - 1)]).ToArray();
        Run(sequences, chunk =>
        {
            var lp = chunk.NextTokenLogProbs();
            Array.Copy(lp, 0, results[chunk.SequenceIndex], chunk.Start, lp.Length);
        }, observer, progress, cancellationToken);
        return results;
    }
}
