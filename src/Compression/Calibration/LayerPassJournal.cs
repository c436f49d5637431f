using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using MoECompress.Compression.Data;
using MoECompress.Compression.Model;
using MoECompress.Formats.Errors;

namespace MoECompress.Compression.Calibration;

/// <summary>
/// The resume journal of a sequential layer pass that decides per layer (prune with compressed propagation): a hidden
/// folder beside the output, <c>.&lt;output name&gt;.&lt;operation&gt;-journal</c>, holding after each finished layer
/// the calibration hidden states at that layer boundary (exact float32), that layer's statistics (a one-layer
/// calibration profile, exact; written once, so the journal grows by one layer's statistics per layer) and
/// <c>journal.json</c> (next layer, the files, a fingerprint of everything that decides the result). A resumed run restores the session and the statistics, so it decides and writes exactly what an
/// uninterrupted run would. Every file is written under a temporary name and renamed; journal.json last.
/// </summary>
internal sealed class LayerPassJournal
{
    private const string JournalFile = "journal.json";
    private readonly string _fingerprint;
    private string? _stateFile;
    private readonly List<string> _statistics = [];

    private LayerPassJournal(string directory, string fingerprint)
    {
        Directory = directory;
        _fingerprint = fingerprint;
    }

    /// <summary>The journal folder.</summary>
    public string Directory { get; }

    /// <summary>First decoder layer the interrupted run had not finished (0 for a new run).</summary>
    public int NextLayer { get; private set; }

    /// <summary>True when this run continues an interrupted one.</summary>
    public bool Resumed { get; private set; }

    /// <summary>The journal folder of an operation writing <paramref name="output"/>.</summary>
    public static string PathFor(string output, string operation)
    {
        var full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(output));
        return Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.{operation}-journal");
    }

    /// <summary>
    /// Opens the journal of <paramref name="output"/>: a new one, or with <paramref name="resume"/> the leftover of an
    /// interrupted run with the same fingerprint. A leftover without <paramref name="resume"/> is an error naming it.
    /// </summary>
    public static LayerPassJournal Open(string output, string operation, string fingerprint, bool resume, string resumeOption)
    {
        var dir = PathFor(output, operation);
        var journal = new LayerPassJournal(dir, fingerprint);
        var file = Path.Combine(dir, JournalFile);
        // A folder without journal.json holds no finished layer (killed before the first one ended): nothing to resume.
        if (System.IO.Directory.Exists(dir) && !File.Exists(file)) System.IO.Directory.Delete(dir, recursive: true);
        if (System.IO.Directory.Exists(dir))
        {
            if (!resume)
                throw new MoeCompressException(ErrorKind.Io,
                    $"{dir}: the journal of an interrupted {operation} of {output} is there; continue it with {resumeOption} or delete it");
            {
                JsonNode? state;
                try { state = JsonNode.Parse(File.ReadAllText(file)); }
                catch (System.Text.Json.JsonException e)
                {
                    throw new MoeCompressException(ErrorKind.Io, $"{file}: unreadable journal ({e.Message}); delete {dir} and start again");
                }
                if (state?["fingerprint"]?.GetValue<string>() != fingerprint)
                    throw new MoeCompressException(ErrorKind.Usage,
                        $"{file}: was written by a {operation} with other options, data or model; rerun with the same ones, or delete {dir} to start again");
                journal.NextLayer = state["next_layer"]?.GetValue<int>() ?? 0;
                journal._stateFile = state["hidden_states"]?.GetValue<string>();
                foreach (var layer in state["statistics"] as JsonArray ?? []) journal._statistics.Add(layer!.GetValue<string>());
                journal.Resumed = journal._stateFile is not null;
            }
        }
        System.IO.Directory.CreateDirectory(dir);
        return journal;
    }

    /// <summary>SHA-256 (hex) of the given parts and of the calibration token ids: what a resumed run must repeat.</summary>
    public static string Fingerprint(CalibrationSet set, params string[] parts)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var p in parts) hash.AppendData(Encoding.UTF8.GetBytes(p + "\n"));
        hash.AppendData(Encoding.UTF8.GetBytes($"{set.Count}x{set.SeqLen}\n"));
        foreach (var s in set.Sequences) hash.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(s.AsSpan()));
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    /// <summary>The statistics of the layers the interrupted run finished, in layer order (empty for a new run).</summary>
    public IReadOnlyList<MoELayerStatistics> RestoreStatistics()
    {
        if (!Resumed) return [];
        var layers = new List<MoELayerStatistics>();
        foreach (var name in _statistics)
        {
            var path = Path.Combine(Directory, name);
            if (!System.IO.Directory.Exists(path))
                throw new MoeCompressException(ErrorKind.Io, $"{path}: the statistics of the interrupted run are missing; delete {Directory} and start again");
            layers.AddRange(CalibrationProfile.Load(path).Layers);
        }
        return layers;
    }

    /// <summary>Moves a fresh session to the layer boundary of the interrupted run (nothing to do for a new run).</summary>
    public void Restore(StreamingSession session)
    {
        if (Resumed) RestoreSession(session, Path.Combine(Directory, _stateFile!), NextLayer, Directory);
    }

    /// <summary>Restores <paramref name="session"/> from a state file of an interrupted run that the journal places before
    /// layer <paramref name="nextLayer"/>; errors name the file and the folder to delete to start again.</summary>
    internal static void RestoreSession(StreamingSession session, string path, int nextLayer, string folder)
    {
        if (!File.Exists(path))
            throw new MoeCompressException(ErrorKind.Io, $"{path}: the saved activations of the interrupted run are missing; delete {folder} and start again");
        session.RestoreState(path);
        if (session.NextLayer != nextLayer)
            throw new MoeCompressException(ErrorKind.Io, $"{path}: holds the state before layer {session.NextLayer}, the journal says {nextLayer}");
    }

    /// <summary>Records a finished layer: the session's hidden states at its boundary and <paramref name="layer"/>, that
    /// layer's statistics (a one-layer profile); the previous hidden-state file is deleted once journal.json points at the new one.</summary>
    public void Save(StreamingSession session, CalibrationProfile layer)
    {
        var next = session.NextLayer;
        var state = $"hidden-states-before-layer-{next}.bin";
        session.SaveState(Path.Combine(Directory, state));
        var name = $"statistics-layer-{layer.Layers.Single().Layer}";
        var path = Path.Combine(Directory, name);
        if (System.IO.Directory.Exists(path)) System.IO.Directory.Delete(path, recursive: true); // left by a kill before journal.json named it
        layer.Save(path);
        _statistics.Add(name);
        var json = new JsonObject
        {
            ["fingerprint"] = _fingerprint, ["next_layer"] = next, ["hidden_states"] = state,
            ["statistics"] = new JsonArray(_statistics.Select(n => (JsonNode?)n).ToArray()),
        };
        var file = Path.Combine(Directory, JournalFile);
        var tmp = file + ".tmp";
        File.WriteAllText(tmp, json.ToJsonString() + "\n");
        File.Move(tmp, file, overwrite: true);
        var previous = _stateFile;
        (_stateFile, NextLayer) = (state, next);
        if (previous is not null && previous != state) File.Delete(Path.Combine(Directory, previous));
    }

    /// <summary>Removes the journal (the run finished, or it was a dry run).</summary>
    public void Delete()
    {
        if (System.IO.Directory.Exists(Directory)) System.IO.Directory.Delete(Directory, recursive: true);
    }
}
