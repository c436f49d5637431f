using System.Diagnostics;
using System.Text.Json.Nodes;
using MoECompress.Compression.Calibration;
using MoECompress.Compression.Model;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;
using MoECompress.Formats.Gguf;
using static TorchSharp.torch;

namespace MoECompress.Compression.Gguf;

/// <summary>
/// <c>quantize --format gguf</c>: writes a checkpoint as one GGUF v3 file for llama.cpp / Ollama.
/// </summary>
/// <remarks>
/// Order of work: options and the tensor plan are checked from headers (family, names, shapes); for quantized types
/// one calibration pass collects each routed expert's importance (<see cref="GgufImportanceObserver"/>); under
/// <c>--bits</c> / <c>--size</c> every candidate type of every (layer, projection) is tried and its weighted error
/// measured, and <see cref="GgufTypeAllocator"/> picks the types; then the file is written tensor by tensor (one expert
/// in memory at a time plus the tensor being written) to a temporary file renamed into place. The input is never modified.
/// </remarks>
public static class GgufExporter
{
    public static Task<GgufExportReport> RunAsync(GgufExportOptions options, IProgress<string>? progress = null, CancellationToken ct = default) =>
        Task.Run(() => Run(options, progress, ct), ct);

    /// <exception cref="MoeCompressException">Usage (options), InvalidConfig (family or tensor without a GGUF name),
    /// Infeasible (budget below the smallest output), Io (output exists).</exception>
    public static GgufExportReport Run(GgufExportOptions options, IProgress<string>? progress = null, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var total = Stopwatch.StartNew();
        var seconds = new Dictionary<string, double>();
        var notes = new List<string>();
        string? output = options.DryRun ? null : Path.GetFullPath(options.Output!);
        if (output is not null && !options.Overwrite && (File.Exists(output) || Directory.Exists(output)))
            throw new MoeCompressException(ErrorKind.Io, $"{output}: already exists (choose another output or allow --overwrite)");

        using var checkpoint = ModelCheckpoint.Open(options.Model, cancellationToken: ct);
        var arch = GgufArchitecture.ForFamily(checkpoint.Family.Name, checkpoint.ConfigPath);
        var plan = GgufTensorPlan.Build(checkpoint, arch, options);
        if (plan.SkippedMtpLayers.Count > 0) notes.Add($"MTP layer(s) {string.Join(", ", plan.SkippedMtpLayers)} left out (llama.cpp does not run them).");
        var metadata = Metadata(checkpoint, arch, plan);

        // 1. Importance of each routed expert's input columns.
        GgufImportanceObserver? importance = null;
        if (options.Quantizes && options.Importance)
        {
            var sw = Stopwatch.StartNew();
            ModelEngine.EnsureSupported(checkpoint.Family, checkpoint.Config);
            var set = CalibrationPass.LoadTokens(checkpoint, options.Data, options.DataOptions, progress, ct);
            progress?.Report($"collecting expert importance on {set.Count} x {set.SeqLen} tokens");
            importance = new GgufImportanceObserver();
            CalibrationPass.Run(checkpoint, set, importance, null, progress, ct);
            seconds["importance"] = sw.Elapsed.TotalSeconds;
        }
        var moe = checkpoint.MoE;
        var unweighted = new List<(int, int, long)>();
        if (options.Quantizes)
            foreach (var l in moe.MoELayerIndices())
                for (var e = 0; e < moe.NumExperts; e++)
                {
                    var tokens = importance?.Tokens(l, e) ?? 0;
                    if (tokens < options.MinTokens) unweighted.Add((l, e, tokens));
                }
        if (importance is not null && unweighted.Count > 0)
            notes.Add($"{unweighted.Count} routed experts had fewer than {options.MinTokens} routed calibration tokens and were quantized without importance weights.");
        var weights = new ExpertColumnWeights(importance, options.MinTokens);

        // 2. Types of the routed experts under the budget.
        if (options.Uniform is null)
        {
            var sw = Stopwatch.StartNew();
            var items = plan.Experts.Where(e => !GgufTensorPlan.Overridden(e, options)).ToList();
            var fixedBytes = GgufWriter.PredictFileBytes(metadata, plan.Entries.Select(e => (e.Name, e.Dimensions, e.Type)).ToList())
                             - items.Sum(e => e.Bytes);
            long budget = options.Size is { } size
                ? size - fixedBytes - 32L * items.Count
                : (long)Math.Floor(options.Bits!.Value * items.Sum(e => e.Elements) / 8);
            var choices = new List<IReadOnlyList<GgufTypeChoice>>();
            foreach (var item in items)
            {
                progress?.Report($"measuring {item.Name} at {string.Join("/", options.Candidates.Select(c => c.FallbackFor(item.Dimensions[0])).Distinct())}");
                var list = new List<GgufTypeChoice>();
                foreach (var type in options.Candidates.Select(c => c.FallbackFor(item.Dimensions[0])).Distinct())
                {
                    ct.ThrowIfCancellationRequested();
                    item.Requested = type;
                    list.Add(new GgufTypeChoice(type, item.Bytes, MeasureError(checkpoint, item, type, weights)));
                }
                choices.Add(list);
            }
            var picked = GgufTypeAllocator.Allocate(choices, budget, options.Size is null ? "--bits" : "--size");
            for (var i = 0; i < items.Count; i++) items[i].Requested = choices[i][picked[i]].Type;
            seconds["allocation"] = sw.Elapsed.TotalSeconds;
        }

        var infos = plan.Entries.Select(e => (e.Name, e.Dimensions, e.Type)).ToList();
        var predicted = GgufWriter.PredictFileBytes(metadata, infos);
        var experts = plan.Experts;
        var expertBits = experts.Count == 0 ? 0 : experts.Sum(e => e.Bytes) * 8.0 / experts.Sum(e => e.Elements);
        if (plan.Entries.Any(e => e.FellBack))
            notes.Add($"{plan.Entries.Count(e => e.FellBack)} tensors have rows that are not whole blocks of the requested type and use llama-quantize's fallback type.");
        var inputBytes = checkpoint.Tensors.Names.Sum(n => checkpoint.Tensors.GetInfo(n).ByteLength);
        GgufExportReport Report(long? actual) => new()
        {
            Options = options, Model = checkpoint.Directory, Family = checkpoint.Family.Name, Architecture = arch.Name,
            Output = actual is null ? null : output, InputBytes = inputBytes, PredictedBytes = predicted, ActualBytes = actual,
            Tensors = plan.Entries.Select(e => (e.Name, e.Requested, e.Type, e.Bytes)).ToList(), ExpertBitsPerWeight = expertBits,
            UnweightedExperts = unweighted, Notes = notes,
            Seconds = new Dictionary<string, double>(seconds) { ["total"] = total.Elapsed.TotalSeconds },
        };
        if (output is null) return Report(null);

        // 3. Write.
        var write = Stopwatch.StartNew();
        long written;
        using (var writer = GgufWriter.Create(output, metadata, infos, options.Overwrite))
        {
            foreach (var entry in plan.Entries)
            {
                ct.ThrowIfCancellationRequested();
                if (entry.Kind == GgufTensorSourceKind.StackedExperts) progress?.Report($"writing {entry.Name} as {entry.Type.ToName()}");
                writer.WriteTensor(entry.Name, Encode(checkpoint, arch, entry, entry.Type, weights));
            }
            progress?.Report($"committing {output}");
            written = writer.Commit();
        }
        seconds["write"] = write.Elapsed.TotalSeconds;
        return Report(written);
    }

    /// <summary>general.*, the architecture's keys, the tokenizer and the source config.json.</summary>
    private static List<KeyValuePair<string, GgufValue>> Metadata(ModelCheckpoint checkpoint, GgufArchitecture arch, GgufTensorPlan plan)
    {
        var expertTypes = plan.Experts.GroupBy(e => e.Type).OrderByDescending(g => g.Sum(e => e.Bytes)).FirstOrDefault()?.Key ?? GgmlType.F16;
        var embedRows = checkpoint.Tensors.GetInfo("model.embed_tokens.weight").Shape[0];
        var kv = new List<KeyValuePair<string, GgufValue>>
        {
            new("general.architecture", GgufValue.Str(arch.Name)),
            new("general.name", GgufValue.Str(Path.GetFileName(checkpoint.Directory))),
            new("general.quantization_version", GgufValue.U32(2)),
            new("general.file_type", GgufValue.U32(FileType(expertTypes))),
            new(GgufFile.AlignmentKey, GgufValue.U32(GgufFile.DefaultAlignment)),
        };
        kv.AddRange(arch.Metadata(checkpoint.Config, checkpoint.MoE, checkpoint.ConfigPath));
        kv.AddRange(GgufTokenizerMetadata.Read(checkpoint.Directory, checkpoint.Config, checkpoint.Family.Name, embedRows));
        kv.Add(new(GgufArchitecture.SourceConfigKey, GgufValue.Str(checkpoint.Config.ToJsonString())));
        kv.Add(new("moe_compress.version", GgufValue.Str(typeof(GgufExporter).Assembly.GetName().Version?.ToString(3) ?? "0.0.0")));
        return kv;
    }

    /// <summary>general.file_type (llama_ftype) of the routed experts' main type: the _M mix for K-quants.</summary>
    private static uint FileType(GgmlType t) => t switch
    {
        GgmlType.F32 => 0, GgmlType.F16 => 1, GgmlType.Q4_0 => 2, GgmlType.Q4_1 => 3, GgmlType.Q8_0 => 7, GgmlType.Q5_0 => 8,
        GgmlType.Q5_1 => 9, GgmlType.Q2_K => 10, GgmlType.Q3_K => 12, GgmlType.Q4_K => 15, GgmlType.Q5_K => 17,
        GgmlType.Q6_K => 18, GgmlType.BF16 => 32, _ => 1,
    };

    /// <summary>The bytes of one planned tensor at <paramref name="type"/>.</summary>
    private static byte[] Encode(ModelCheckpoint checkpoint, GgufArchitecture arch, GgufTensorEntry entry, GgmlType type, ExpertColumnWeights weights)
    {
        if (entry.Kind == GgufTensorSourceKind.StackedExperts)
        {
            var rowBytes = type.RowBytes(entry.Dimensions[0]);
            var perExpert = rowBytes * entry.Dimensions[1];
            var bytes = new byte[perExpert * entry.Dimensions[2]];
            for (var e = 0; e < entry.Dimensions[2]; e++)
            {
                var values = LoadExpert(checkpoint, entry.Layer, e, entry.Projection!.Value);
                var w = type.IsFloat() ? null : weights.For(entry.Layer, e, entry.Projection.Value);
                QuantizeInto(type, values, entry.Dimensions[0], w, bytes.AsSpan((int)(e * perExpert), (int)perExpert));
            }
            return bytes;
        }
        var data = Values(checkpoint, arch, entry);
        var result = new byte[entry.Dimensions.Skip(1).Aggregate(1L, (a, b) => a * b) * type.RowBytes(entry.Dimensions[0])];
        QuantizeInto(type, data, entry.Dimensions[0], null, result);
        return result;
    }

    private static void QuantizeInto(GgmlType type, float[] values, long rowElements, float[]? columnWeights, Span<byte> destination)
    {
        var rows = values.Length / rowElements;
        var rowBytes = type.RowBytes(rowElements);
        var dst = destination.ToArray();
        Parallel.For(0, rows, r => GgmlCodec.QuantizeRow(type, values.AsSpan((int)(r * rowElements), (int)rowElements), columnWeights,
            dst.AsSpan((int)(r * rowBytes), (int)rowBytes)));
        dst.CopyTo(destination);
    }

    /// <summary>Σ_e Σ_rows Σ_c imp_e[c]·(w − ŵ)² of a stacked expert tensor at <paramref name="type"/>.</summary>
    private static double MeasureError(ModelCheckpoint checkpoint, GgufTensorEntry entry, GgmlType type, ExpertColumnWeights weights)
    {
        long cols = entry.Dimensions[0], rows = entry.Dimensions[1];
        double error = 0;
        for (var e = 0; e < entry.Dimensions[2]; e++)
        {
            var values = LoadExpert(checkpoint, entry.Layer, e, entry.Projection!.Value);
            var w = type.IsFloat() ? null : weights.For(entry.Layer, e, entry.Projection.Value);
            var bytes = new byte[rows * type.RowBytes(cols)];
            QuantizeInto(type, values, cols, w, bytes);
            var back = new float[values.Length];
            GgmlCodec.DequantizeRows(type, bytes, cols, back);
            var imp = weights.ErrorWeights(entry.Layer, e, entry.Projection.Value, (int)cols);
            for (var i = 0; i < values.Length; i++)
            {
                var d = values[i] - back[i];
                error += imp[i % cols] * d * d;
            }
        }
        return error;
    }

    private static float[] LoadExpert(ModelCheckpoint checkpoint, int layer, int expert, ExpertProjection p)
    {
        using var scope = NewDisposeScope();
        return checkpoint.LoadExpert(layer, expert, p).contiguous().data<float>().ToArray();
    }

    /// <summary>A non-expert tensor's float32 values in GGUF row order (llama q/k permuted; kv_b split).</summary>
    private static float[] Values(ModelCheckpoint checkpoint, GgufArchitecture arch, GgufTensorEntry entry)
    {
        float[] raw;
        using (NewDisposeScope())
            raw = checkpoint.Tensors.ToTensor(entry.HfName!, ScalarType.Float32).contiguous().data<float>().ToArray();
        var r = new ConfigReader(checkpoint.Config, checkpoint.ConfigPath);
        switch (entry.Kind)
        {
            case GgufTensorSourceKind.Tensor when arch.PermutesQk && entry.Name.EndsWith(".attn_q.weight", StringComparison.Ordinal):
                return GgufArchitecture.PermuteRows(raw, r.Int("num_attention_heads"), (int)entry.Dimensions[1], (int)entry.Dimensions[0], inverse: false);
            case GgufTensorSourceKind.Tensor when arch.PermutesQk && entry.Name.EndsWith(".attn_k.weight", StringComparison.Ordinal):
                var heads = r.Int("num_attention_heads");
                return GgufArchitecture.PermuteRows(raw, r.Int("num_key_value_heads", heads), (int)entry.Dimensions[1], (int)entry.Dimensions[0], inverse: false);
            case GgufTensorSourceKind.KvBKeys:
            {
                long nope = entry.Dimensions[0], rank = entry.Dimensions[1], h = entry.Dimensions[2];
                var v = r.Int("v_head_dim");
                var k = new float[nope * rank * h];
                for (var head = 0; head < h; head++)
                    for (var row = 0; row < nope; row++)
                        for (var c = 0; c < rank; c++)
                            k[(head * rank + c) * nope + row] = raw[(head * (nope + v) + row) * rank + c];
                return k;
            }
            case GgufTensorSourceKind.KvBValues:
            {
                long rank = entry.Dimensions[0], v = entry.Dimensions[1], h = entry.Dimensions[2];
                var nope = r.Int("qk_nope_head_dim");
                var values = new float[rank * v * h];
                for (var head = 0; head < h; head++)
                    Array.Copy(raw, (head * (nope + v) + nope) * rank, values, head * v * rank, v * rank);
                return values;
            }
            default:
                return raw;
        }
    }
}
