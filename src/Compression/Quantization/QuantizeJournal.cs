using System.Text.Json.Nodes;
using MoECompress.Compression.Model;
using MoECompress.Formats.Safetensors;

namespace MoECompress.Compression.Quantization;

/// <summary>
/// What a quantize run records after each finished layer, inside its resumable output folder
/// (<see cref="CheckpointWriter.SaveProgress"/>): the next layer to write, the calibration hidden states at that layer
/// boundary (exact float32, so a resumed run computes exactly what an uninterrupted one would) and the GPTQ fallbacks so
/// far. <see cref="Restore"/> puts a resumed session where the interrupted one stood.
/// </summary>
internal sealed class QuantizeJournal
{
    private const string StatePrefix = "hidden-states-before-layer-";
    private readonly CheckpointWriter _writer;
    private string? _stateFile;

    public QuantizeJournal(CheckpointWriter writer, List<QuantizeFallback> fallbacks)
    {
        _writer = writer;
        Fallbacks = fallbacks;
        if (writer.ResumedState is not { } state) return;
        NextLayer = state["next_layer"]?.GetValue<int>() ?? 0;
        _stateFile = state["hidden_states"]?.GetValue<string>();
        foreach (var f in state["fallbacks"] as JsonArray ?? [])
            fallbacks.Add(new QuantizeFallback(f!["layer"]!.GetValue<int>(), f["expert"]!.GetValue<int>(), f["routed_tokens"]!.GetValue<long>(),
                f["reason"]!.GetValue<string>(), f["fallback"]?.GetValue<string>()));
    }

    /// <summary>First decoder layer not yet written.</summary>
    public int NextLayer { get; private set; }

    /// <summary>Experts quantized with RTN instead of GPTQ, across the interrupted and this run.</summary>
    public List<QuantizeFallback> Fallbacks { get; }

    /// <summary>One line for the progress log.</summary>
    public string Describe() => $"continuing at layer {NextLayer}";

    /// <summary>Records progress up to <paramref name="nextLayer"/> (no saved activations: RTN, or before any layer ran).</summary>
    public void Save(int nextLayer)
    {
        NextLayer = nextLayer;
        _writer.SaveProgress(State(null));
    }

    /// <summary>Saves the session's hidden states at its layer boundary, then records the progress; the previous state
    /// file is deleted only once the journal points at the new one.</summary>
    public void Save(StreamingSession session)
    {
        var file = $"{StatePrefix}{session.NextLayer}.bin";
        session.SaveState(Path.Combine(_writer.ScratchDirectory, file));
        NextLayer = session.NextLayer;
        var previous = _stateFile;
        _stateFile = file;
        _writer.SaveProgress(State(file));
        if (previous is not null && previous != file) File.Delete(Path.Combine(_writer.ScratchDirectory, previous));
    }

    /// <summary>Moves a fresh session to the layer boundary of the interrupted run (nothing to do for a new run).</summary>
    public void Restore(StreamingSession session)
    {
        if (_stateFile is null) return;
        Calibration.LayerPassJournal.RestoreSession(session, Path.Combine(_writer.ScratchDirectory, _stateFile), NextLayer, _writer.TemporaryDirectory);
    }

    private JsonObject State(string? hiddenStates) => new()
    {
        ["next_layer"] = NextLayer,
        ["hidden_states"] = hiddenStates,
        ["fallbacks"] = new JsonArray(Fallbacks.Where(f => f.Method is not null).Select(f => (JsonNode?)new JsonObject
        {
            ["layer"] = f.Layer, ["expert"] = f.Expert, ["routed_tokens"] = f.RoutedTokens, ["reason"] = f.Reason, ["fallback"] = f.Method,
        }).ToArray()),
    };
}
