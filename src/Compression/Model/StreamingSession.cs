using static TorchSharp.torch;

namespace MoECompress.Compression.Model;

/// <summary>
/// A set of sequences being streamed through a model, one decoder layer at a time: the hidden states of every
/// sequence live in a <see cref="HiddenStateStore"/> (RAM or a temp file); <see cref="RunNextLayer"/> loads one
/// layer's weights, pushes every sequence through it in micro-batches and releases the layer. Peak memory is one
/// layer's weights plus the hidden states plus one micro-batch's activations, whatever the number of layers.
/// Drive it step by step (e.g. two sessions in lockstep to compare a compressed model with its base layer by layer)
/// or use <see cref="StreamingRunner.Run"/>. Create with <see cref="StreamingRunner.Start"/>.
/// </summary>
public sealed class StreamingSession : IDisposable
{
    private readonly HiddenStateStore _store;
    private readonly IReadOnlyList<MicroBatch> _batches;
    private readonly Dictionary<int, RotaryTables> _rope = new();
    private readonly IProgress<StreamingProgress>? _progress;
    private int? _failedLayer;

    internal StreamingSession(ModelEngine engine, IReadOnlyList<IReadOnlyList<int>> sequences, StreamingOptions options,
        IProgress<StreamingProgress>? progress, CancellationToken cancellationToken)
    {
        options.Validate();
        if (sequences.Count == 0) throw new ArgumentException("no sequences to run", nameof(sequences));
        for (var i = 0; i < sequences.Count; i++)
            if (sequences[i].Count == 0) throw new ArgumentException($"sequence {i} is empty", nameof(sequences));
        Engine = engine;
        Sequences = sequences;
        Options = options;
        _progress = progress;
        _batches = PlanMicroBatches(sequences, options.MicroBatchTokens);
        _store = new HiddenStateStore(sequences.Select(s => s.Count).ToArray(), engine.Config.HiddenSize,
            options.MaxResidentHiddenStateBytes, options.SpillDirectory);
        try
        {
            Embed(cancellationToken);
        }
        catch
        {
            _store.Dispose();
            throw;
        }
    }

    public ModelEngine Engine { get; }
    public IReadOnlyList<IReadOnlyList<int>> Sequences { get; }
    public StreamingOptions Options { get; }
    /// <summary>Micro-batches (sequences of equal length grouped up to <see cref="StreamingOptions.MicroBatchTokens"/>).</summary>
    public IReadOnlyList<MicroBatch> MicroBatches => _batches;
    /// <summary>Index of the next decoder layer to run (= layers done).</summary>
    public int NextLayer { get; private set; }
    public int NumLayers => Engine.Config.NumLayers;
    public bool AllLayersDone => NextLayer >= NumLayers;
    /// <summary>True when the hidden states live in a temporary file.</summary>
    public bool HiddenStatesSpilled => _store.Spilled;
    /// <summary>Bytes of hidden states held (RAM or file).</summary>
    public long HiddenStateBytes => _store.TotalBytes;

    /// <summary>Groups sequences of equal length (in input order) into batches of at most <paramref name="maxTokens"/> tokens (at least one sequence).</summary>
    public static IReadOnlyList<MicroBatch> PlanMicroBatches(IReadOnlyList<IReadOnlyList<int>> sequences, int maxTokens)
    {
        var batches = new List<MicroBatch>();
        foreach (var group in Enumerable.Range(0, sequences.Count).GroupBy(i => sequences[i].Count))
        {
            var length = group.Key;
            var perBatch = Math.Max(1, maxTokens / length);
            foreach (var chunk in group.Chunk(perBatch))
                batches.Add(new MicroBatch(chunk, length));
        }
        return batches;
    }

    private void Embed(CancellationToken ct)
    {
        using var noGrad = no_grad();
        using var table = Engine.LoadEmbedding();
        for (var s = 0; s < Sequences.Count; s++)
        {
            ct.ThrowIfCancellationRequested();
            using var scope = NewDisposeScope();
            _store.Write(s, table.Lookup(Sequences[s], s));
            if ((s + 1) % 64 == 0 || s + 1 == Sequences.Count)
                _progress?.Report(new StreamingProgress(StreamingStage.Embedding, null, NumLayers, s + 1, Sequences.Count));
        }
    }

    private RotaryTables Rope(int length)
    {
        if (!_rope.TryGetValue(length, out var tables))
        {
            tables = Engine.Rotary.Tables(length);
            tables.Cos.DetachFromDisposeScope();
            tables.Sin.DetachFromDisposeScope();
            _rope[length] = tables;
        }
        return tables;
    }

    /// <summary>
    /// Loads layer <see cref="NextLayer"/>, runs every sequence through it (reporting to <paramref name="observer"/>),
    /// stores the outputs and releases the layer's weights.
    /// </summary>
    public void RunNextLayer(ILayerObserver? observer = null, CancellationToken cancellationToken = default)
    {
        if (AllLayersDone) throw new InvalidOperationException("every decoder layer has already run");
        ThrowIfFailed();
        _progress?.Report(new StreamingProgress(StreamingStage.LoadingLayer, NextLayer, NumLayers, 0, Sequences.Count));
        using var layer = LoadNextLayer();
        Advance(layer, observer, cancellationToken);
    }

    /// <summary>The weights of decoder layer <see cref="NextLayer"/> as the engine reads them (the caller disposes the layer).
    /// Run it with <see cref="Observe"/> as often as needed, change it (e.g. replace expert weights by their compressed
    /// versions), then move the hidden states on with <see cref="Advance"/>.</summary>
    public DecoderLayer LoadNextLayer()
    {
        if (AllLayersDone) throw new InvalidOperationException("every decoder layer has already run");
        ThrowIfFailed();
        using var noGrad = no_grad();
        return Engine.LoadLayer(NextLayer);
    }

    /// <summary>
    /// Runs every sequence through <paramref name="layer"/> (which must be layer <see cref="NextLayer"/>, e.g. from
    /// <see cref="LoadNextLayer"/>) with <paramref name="observer"/> attached, and discards the outputs: the hidden states
    /// stay the layer's inputs, so several observers can see the same inputs one after another (a layer's experts in
    /// chunks whose statistics fit in memory).
    /// </summary>
    public void Observe(DecoderLayer layer, ILayerObserver observer, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(observer);
        RunLayer(layer, observer, store: false, cancellationToken);
    }

    /// <summary>
    /// Runs every sequence through <paramref name="layer"/> (layer <see cref="NextLayer"/>; the caller keeps ownership),
    /// stores its outputs as the next layer's inputs and moves on to the next layer.
    /// </summary>
    public void Advance(DecoderLayer layer, ILayerObserver? observer = null, CancellationToken cancellationToken = default)
    {
        RunLayer(layer, observer, store: true, cancellationToken);
        NextLayer++;
    }

    private void RunLayer(DecoderLayer layer, ILayerObserver? observer, bool store, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(layer);
        if (AllLayersDone) throw new InvalidOperationException("every decoder layer has already run");
        ThrowIfFailed();
        var index = NextLayer;
        if (layer.Index != index) throw new ArgumentException($"the session is at layer {index}, the layer given is {layer.Index}", nameof(layer));
        using var noGrad = no_grad();
        // A failure mid-layer leaves some sequences one layer ahead of the others: the session cannot go on.
        if (store) _failedLayer = index;
        observer?.OnLayerStart(layer);
        var done = 0;
        foreach (var batch in _batches)
        {
            cancellationToken.ThrowIfCancellationRequested();
            using var scope = NewDisposeScope();
            var x = _store.Gather(batch.SequenceIndices);
            var y = layer.Forward(x, Rope(batch.SequenceLength), observer, batch);
            if (store) _store.Scatter(batch.SequenceIndices, y);
            done += batch.SequenceIndices.Count;
            _progress?.Report(new StreamingProgress(StreamingStage.Layer, index, NumLayers, done, Sequences.Count));
        }
        observer?.OnLayerEnd(layer);
        _failedLayer = null;
    }

    private void ThrowIfFailed()
    {
        if (_failedLayer is { } l)
            throw new InvalidOperationException($"this session failed or was cancelled during layer {l}; start a new one");
    }

    /// <summary>Runs every remaining decoder layer.</summary>
    public void RunRemainingLayers(ILayerObserver? observer = null, CancellationToken cancellationToken = default)
    {
        while (!AllLayersDone) RunNextLayer(observer, cancellationToken);
    }

    /// <summary>
    /// Saves where the session stands — the next layer and every sequence's hidden states (float32, exact) — so that a
    /// later session over the same sequences can continue from here (<see cref="RestoreState"/>): what a resumed run uses.
    /// The file is written under a temporary name and renamed.
    /// </summary>
    public void SaveState(string path)
    {
        ThrowIfFailed();
        var temp = path + ".new";
        using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
        {
            using (var w = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true))
            {
                w.Write(StateMagic);
                w.Write(NextLayer);
                w.Write(Sequences.Count);
                foreach (var seq in Sequences) w.Write(seq.Count);
                w.Write(Engine.Config.HiddenSize);
            }
            _store.SaveTo(stream);
            stream.Flush(flushToDisk: true);
        }
        File.Move(temp, path, overwrite: true);
    }

    /// <summary>Continues from a state <see cref="SaveState"/> wrote for the same sequences and model width.</summary>
    /// <exception cref="Formats.Errors.MoeCompressException">Io: the file is not such a state, or belongs to other sequences.</exception>
    public void RestoreState(string path)
    {
        ThrowIfFailed();
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        using (var r = new BinaryReader(stream, System.Text.Encoding.UTF8, leaveOpen: true))
        {
            string Bad(string what) => $"{path}: {what}; delete the partial output and start again";
            try
            {
                if (r.ReadInt64() != StateMagic) throw new Formats.Errors.MoeCompressException(Formats.Errors.ErrorKind.Io, Bad("not a saved layer state"));
                var next = r.ReadInt32();
                var count = r.ReadInt32();
                if (count != Sequences.Count || next < 0 || next > NumLayers)
                    throw new Formats.Errors.MoeCompressException(Formats.Errors.ErrorKind.Io, Bad($"holds {count} sequences at layer {next}, this run has {Sequences.Count} sequences and {NumLayers} layers"));
                for (var i = 0; i < count; i++)
                    if (r.ReadInt32() != Sequences[i].Count)
                        throw new Formats.Errors.MoeCompressException(Formats.Errors.ErrorKind.Io, Bad($"sequence {i} has another length than in this run"));
                if (r.ReadInt32() != Engine.Config.HiddenSize)
                    throw new Formats.Errors.MoeCompressException(Formats.Errors.ErrorKind.Io, Bad("was saved for another hidden size"));
                _store.LoadFrom(stream, path);
                NextLayer = next;
            }
            catch (EndOfStreamException ex)
            {
                throw new Formats.Errors.MoeCompressException(Formats.Errors.ErrorKind.Io, Bad("is truncated"), ex);
            }
        }
    }

    private const long StateMagic = 0x3130_4554_4154_534C; // "LSTATE01"

    /// <summary>The current hidden states [L, H] of one sequence (output of layer NextLayer − 1; embeddings before any layer). New tensor.</summary>
    public Tensor ReadHiddenStates(int sequence)
    {
        ThrowIfFailed();
        return _store.Read(sequence);
    }

    /// <summary>
    /// After the last layer: final norm + lm_head, applied per sequence in chunks of
    /// <see cref="StreamingOptions.HeadChunkTokens"/> rows; each chunk goes to <paramref name="onLogits"/>.
    /// </summary>
    public void ApplyHead(Action<SequenceLogits> onLogits, CancellationToken cancellationToken = default)
    {
        ThrowIfFailed();
        if (!AllLayersDone) throw new InvalidOperationException($"layers {NextLayer}..{NumLayers - 1} have not run yet");
        using var noGrad = no_grad();
        using var head = Engine.LoadHead();
        var chunk = Options.HeadChunkTokens;
        for (var s = 0; s < Sequences.Count; s++)
        {
            using var scope = NewDisposeScope();
            var h = _store.Read(s);
            for (var start = 0; start < Sequences[s].Count; start += chunk)
            {
                cancellationToken.ThrowIfCancellationRequested();
                using var inner = NewDisposeScope();
                var n = Math.Min(chunk, Sequences[s].Count - start);
                var logits = head.Logits(h.narrow(0, start, n));
                onLogits(new SequenceLogits(s, Sequences[s], start, logits));
            }
            if ((s + 1) % 16 == 0 || s + 1 == Sequences.Count)
                _progress?.Report(new StreamingProgress(StreamingStage.Head, null, NumLayers, s + 1, Sequences.Count));
        }
    }

    public void Dispose()
    {
        foreach (var t in _rope.Values) t.Dispose();
        _rope.Clear();
        _store.Dispose();
    }
}
