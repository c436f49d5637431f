using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.RegularExpressions;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Safetensors;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MoECompress.Compression.Training;

/// <summary>
/// The checkpoint folder of a resumable training run. Each checkpoint is a sub-folder <c>step-NNNNNNNN</c> written by
/// <see cref="CheckpointWriter"/> (temporary folder, fsync, rename: a kill mid-write leaves the previous checkpoint
/// intact and the half-written one under a hidden temporary name, ignored and deleted by the next save) holding
/// <c>model.safetensors</c> (fp32: <c>param.NAME</c>, <c>exp_avg.NAME</c>, <c>exp_avg_sq.NAME</c> for every
/// parameter NAME, and <c>buffer.NAME</c> for every buffer NAME training changes, e.g. DeepSeek-V3's
/// e_score_correction_bias), <see cref="StateFileName"/> (<see cref="TrainingCheckpointState"/>) and the manifest with the
/// SHA-256 of both, checked before a resume. Older checkpoints are deleted once a newer one is in place.
/// </summary>
public sealed partial class TrainingCheckpoints
{
    public const string StateFileName = "training-state.json";
    private const string ParamPrefix = "param.", ExpAvgPrefix = "exp_avg.", ExpAvgSqPrefix = "exp_avg_sq.", BufferPrefix = "buffer.";

    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    public TrainingCheckpoints(string folder) => Folder = Path.TrimEndingDirectorySeparator(Path.GetFullPath(folder));

    public string Folder { get; }

    [GeneratedRegex(@"^step-(\d{8})$")]
    private static partial Regex CheckpointName();

    [GeneratedRegex(@"^\.step-(\d{8})\.tmp-")]
    private static partial Regex LeftoverName();

    /// <summary>The newest complete checkpoint (highest step), or null when there is none.</summary>
    public string? Latest() => Complete().Select(c => c.Path).FirstOrDefault();

    private IEnumerable<(int Step, string Path)> Complete()
    {
        if (!Directory.Exists(Folder)) return [];
        return Directory.EnumerateDirectories(Folder)
            .Select(path => (Match: CheckpointName().Match(Path.GetFileName(path)), Path: path))
            .Where(m => m.Match.Success && File.Exists(Path.Combine(m.Path, CheckpointManifest.FileName)))
            .Select(m => (int.Parse(m.Match.Groups[1].Value, CultureInfo.InvariantCulture), m.Path))
            .OrderByDescending(c => c.Item1);
    }

    /// <summary>Reads the state of a checkpoint (no tensors).</summary>
    public static TrainingCheckpointState ReadState(string checkpoint)
    {
        var path = Path.Combine(checkpoint, StateFileName);
        try
        {
            var state = JsonSerializer.Deserialize<TrainingCheckpointState>(File.ReadAllText(path), Json)
                        ?? throw new JsonException("empty document");
            if (state.Format != TrainingCheckpointState.CurrentFormat)
                throw new MoeCompressException(ErrorKind.InvalidCheckpoint,
                    $"'{path}': checkpoint format {state.Format}, this version reads format {TrainingCheckpointState.CurrentFormat}");
            return state;
        }
        catch (Exception e) when (e is JsonException or IOException or NotSupportedException)
        {
            throw new MoeCompressException(ErrorKind.InvalidCheckpoint, $"'{path}' cannot be read: {e.Message}", e);
        }
    }

    /// <summary>
    /// Throws a one-line <see cref="ErrorKind.Usage"/> error naming the first option of <paramref name="current"/> whose
    /// value differs from the checkpoint's (options missing from <paramref name="current"/> are not compared).
    /// </summary>
    public static void RequireSameOptions(string checkpoint, TrainingCheckpointState saved, IEnumerable<KeyValuePair<string, string>> current)
    {
        var old = saved.Options.ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
        foreach (var (option, value) in current)
        {
            old.TryGetValue(option, out var was);
            if (was != value)
                throw new MoeCompressException(ErrorKind.Usage,
                    $"cannot resume from '{checkpoint}': {option} was {was ?? "(not recorded)"} when it was written, now {value}; " +
                    "resume with the same options, or delete the checkpoint folder to start over");
        }
    }

    /// <summary>
    /// Writes the checkpoint of step <see cref="TrainingCheckpointState.Step"/> (never cancelled half-way: it is
    /// what a cancellation saves) and deletes older checkpoints and the temporary folders of killed writes.
    /// </summary>
    public string Save(TrainingCheckpointState state, IReadOnlyList<(string Name, Parameter Parameter)> parameters, AdamW optimizer,
        IReadOnlyList<(string Name, Tensor Buffer)>? buffers = null)
    {
        var moments = Moments(parameters, optimizer);
        var destination = Path.Combine(Folder, $"step-{state.Step:D8}");
        var tensors = new List<(string Name, Tensor Tensor)>();
        for (int i = 0; i < parameters.Count; i++)
        {
            var (name, p) = parameters[i];
            tensors.Add((ParamPrefix + name, p));
            tensors.Add((ExpAvgPrefix + name, moments[i].exp_avg));
            tensors.Add((ExpAvgSqPrefix + name, moments[i].exp_avg_sq));
        }
        foreach (var (name, buffer) in buffers ?? [])
            tensors.Add((BufferPrefix + name, buffer));
        var plan = tensors.Select(t => new TensorSpec(t.Name, SafetensorsDType.F32, t.Tensor.shape)).ToList();
        using (var scope = NewDisposeScope())
        using (var writer = CheckpointWriter.Create(destination, plan,
                   new CheckpointWriterOptions { MaxShardBytes = long.MaxValue, WriteIndex = false }))
        {
            foreach (var (name, tensor) in tensors)
                writer.Write(name, tensor.detach().contiguous());
            writer.WriteTextFile(StateFileName, JsonSerializer.Serialize(state, Json) + "\n");
            writer.Commit(CancellationToken.None);
        }
        foreach (var (_, older) in Complete().Where(c => c.Step != state.Step))
            Directory.Delete(older, recursive: true);
        // Hidden leftovers (".step-N.tmp-XXXXXXXX" and its lock file) of writes killed half-way: stale once a checkpoint
        // at least as new is complete.
        foreach (var leftover in Directory.EnumerateFileSystemEntries(Folder, ".step-*.tmp-*"))
        {
            var m = LeftoverName().Match(Path.GetFileName(leftover));
            if (!m.Success || int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) > state.Step) continue;
            if (Directory.Exists(leftover)) Directory.Delete(leftover, recursive: true);
            else File.Delete(leftover);
        }
        return destination;
    }

    /// <summary>
    /// Checks a checkpoint against its manifest, copies its parameters, AdamW moments and buffers into
    /// <paramref name="parameters"/>, <paramref name="optimizer"/> and <paramref name="buffers"/> and returns its state.
    /// </summary>
    public static TrainingCheckpointState Restore(string checkpoint, IReadOnlyList<(string Name, Parameter Parameter)> parameters,
        AdamW optimizer, CancellationToken ct = default, IReadOnlyList<(string Name, Tensor Buffer)>? buffers = null)
    {
        var problems = CheckpointManifest.Read(checkpoint).Verify(checkpoint, ct);
        if (problems.Count > 0)
            throw new MoeCompressException(ErrorKind.InvalidCheckpoint,
                $"checkpoint '{checkpoint}' is damaged ({problems[0]}); delete it to fall back to starting over");
        var state = ReadState(checkpoint);
        var moments = Moments(parameters, optimizer);
        using var source = SafetensorsCheckpoint.Open(checkpoint);
        using var noGrad = no_grad();
        for (int i = 0; i < parameters.Count; i++)
        {
            var (name, p) = parameters[i];
            if (!state.OptimizerSteps.TryGetValue(name, out long steps))
                throw new MoeCompressException(ErrorKind.InvalidCheckpoint, $"checkpoint '{checkpoint}' has no optimizer step count for '{name}'");
            Load(source, checkpoint, ParamPrefix + name, p);
            Load(source, checkpoint, ExpAvgPrefix + name, moments[i].exp_avg);
            Load(source, checkpoint, ExpAvgSqPrefix + name, moments[i].exp_avg_sq);
            moments[i].step = steps;
        }
        foreach (var (name, buffer) in buffers ?? [])
            Load(source, checkpoint, BufferPrefix + name, buffer);
        return state;
    }

    /// <summary>AdamW's step count of every parameter, for <see cref="TrainingCheckpointState.OptimizerSteps"/>.</summary>
    public static Dictionary<string, long> OptimizerSteps(IReadOnlyList<(string Name, Parameter Parameter)> parameters, AdamW optimizer)
    {
        var moments = Moments(parameters, optimizer);
        return parameters.Select((p, i) => (p.Name, moments[i].step)).ToDictionary(x => x.Name, x => x.step, StringComparer.Ordinal);
    }

    /// <summary>Deletes the checkpoint folder (after the finished model has been written).</summary>
    public void DeleteFolder()
    {
        if (Directory.Exists(Folder)) Directory.Delete(Folder, recursive: true);
    }

    private static void Load(SafetensorsCheckpoint source, string checkpoint, string name, Tensor target) =>
        ReferenceCheckpointLoader.CopyTensor(source, checkpoint, name, target, "tensor is missing from the training checkpoint", "the model's");

    // The optimiser keeps one state per parameter, in the order of its (single) parameter group: the order the
    // parameters were given in, which is the order of `parameters` here.
    private static List<AdamW.State> Moments(IReadOnlyList<(string Name, Parameter Parameter)> parameters, AdamW optimizer)
    {
        var states = optimizer.state_dict().State.Cast<AdamW.State>().ToList();
        if (states.Count != parameters.Count)
            throw new InvalidOperationException($"the optimizer holds {states.Count} parameter states for {parameters.Count} parameters");
        return states;
    }
}
