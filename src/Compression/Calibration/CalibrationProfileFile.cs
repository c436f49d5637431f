using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Safetensors;

namespace MoECompress.Compression.Calibration;

/// <summary>Reads and writes the on-disk form of a <see cref="CalibrationProfile"/> (see its remarks).</summary>
internal static class CalibrationProfileFile
{
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    // ------------------------------------------------------------------ save

    public static string Save(CalibrationProfile profile, string directory, bool overwrite, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(directory);
        var plan = new List<TensorSpec>();
        var writes = new List<Action<CheckpointWriter>>();
        void Add<T>(string name, SafetensorsDType dtype, long[] shape, T[] values) where T : struct
        {
            plan.Add(new TensorSpec(name, dtype, shape));
            writes.Add(w => w.Write(name, MemoryMarshal.AsBytes(values.AsSpan())));
        }

        foreach (var l in profile.Layers)
        {
            var e = l.NumExperts;
            Add(ProfileTensorNames.SelectionCount(l.Layer), SafetensorsDType.I64, [e], l.SelectionCount);
            Add(ProfileTensorNames.RoutedTokens(l.Layer), SafetensorsDType.I64, [e], l.RoutedTokens);
            Add(ProfileTensorNames.RoutingWeightMass(l.Layer), SafetensorsDType.F64, [e], l.RoutingWeightMass);
            Add(ProfileTensorNames.GateWeightMass(l.Layer), SafetensorsDType.F64, [e], l.GateWeightMass);
            Add(ProfileTensorNames.Tcess(l.Layer), SafetensorsDType.F64, [e], l.Tcess);
            Add(ProfileTensorNames.Reap(l.Layer), SafetensorsDType.F64, [e], l.Reap);
            Add(ProfileTensorNames.MaxAbsOutput(l.Layer), SafetensorsDType.F64, [e], l.MaxAbsOutput);
            Add(ProfileTensorNames.Coselection(l.Layer), SafetensorsDType.I64, [e, e], l.Coselection);
            Add(ProfileTensorNames.MeanOutput(l.Layer), SafetensorsDType.F32, [e, l.HiddenSize], l.MeanOutput);
            if (l.MeanOutputAllTokens is { } all)
                Add(ProfileTensorNames.MeanOutputAllTokens(l.Layer), SafetensorsDType.F32, [e, l.HiddenSize], all);
        }

        var options = new CheckpointWriterOptions
        {
            Layout = [new ShardLayout(CalibrationProfile.TensorFileName, plan.Select(p => p.Name).ToArray())],
            WriteIndex = false,
            Overwrite = overwrite,
            ToolVersion = profile.ToolVersion,
            Metadata = new Dictionary<string, string>
            {
                ["format"] = "pt",
                ["content"] = CalibrationProfile.FormatName,
                ["format_version"] = CalibrationProfile.FormatVersion.ToString(CultureInfo.InvariantCulture),
            },
            ManifestOptions = OptionsJson(profile.Options),
        };
        using var writer = CheckpointWriter.Create(directory, plan, options);
        foreach (var write in writes)
        {
            ct.ThrowIfCancellationRequested();
            write(writer);
        }
        writer.WriteTextFile(CalibrationProfile.SummaryFileName, SummaryJson(profile).ToJsonString(Indented) + "\n");
        if (profile.RouterLogits is { } dump)
            WriteRouterLogits(dump, Path.Combine(writer.TemporaryDirectory, CalibrationProfile.RouterLogitsFolder), profile.ToolVersion, ct);
        writer.Commit(ct);
        return writer.Destination;
    }

    private static void WriteRouterLogits(RouterLogitDump dump, string destination, string toolVersion, CancellationToken ct)
    {
        var plan = new List<TensorSpec>();
        var n = dump.Tokens;
        plan.Add(new TensorSpec(RouterLogitDump.SequenceLengthsName, SafetensorsDType.I64, [dump.SequenceLengths.Count]));
        if (dump.TokenIds is not null) plan.Add(new TensorSpec(RouterLogitDump.TokenIdsName, SafetensorsDType.I64, [n]));
        foreach (var layer in dump.Layers.Keys.Order())
            plan.Add(new TensorSpec(RouterLogitDump.TensorName(layer), SafetensorsDType.F32, [n, dump.NumExperts]));
        var options = new CheckpointWriterOptions
        {
            Layout = [new ShardLayout(CalibrationProfile.RouterLogitsFileName, plan.Select(p => p.Name).ToArray())],
            WriteIndex = false,
            ToolVersion = toolVersion,
            Metadata = new Dictionary<string, string> { ["format"] = "pt", ["content"] = "moe-compress router logits" },
        };
        using var writer = CheckpointWriter.Create(destination, plan, options);
        writer.Write(RouterLogitDump.SequenceLengthsName, MemoryMarshal.AsBytes(dump.SequenceLengths.Select(l => (long)l).ToArray().AsSpan()));
        if (dump.TokenIds is not null)
            writer.Write(RouterLogitDump.TokenIdsName, MemoryMarshal.AsBytes(dump.TokenIds.SelectMany(t => t).Select(t => (long)t).ToArray().AsSpan()));
        foreach (var (layer, values) in dump.Layers)
        {
            ct.ThrowIfCancellationRequested();
            writer.Write(RouterLogitDump.TensorName(layer), MemoryMarshal.AsBytes(values.AsSpan()));
        }
        writer.Commit(ct);
    }

    private static JsonObject OptionsJson(CalibrationCollectorOptions o) => new()
    {
        ["mean_output_over_all_tokens"] = o.MeanOutputOverAllTokens,
        ["keep_router_logits"] = o.KeepRouterLogits,
        ["cold_threshold"] = o.ColdThreshold is { } c ? JsonValue.Create(c) : null,
    };

    private static JsonNode? Num(double v) => double.IsFinite(v) ? JsonValue.Create(v) : null;

    internal static JsonObject SummaryJson(CalibrationProfile p)
    {
        var m = p.Model;
        var model = new JsonObject
        {
            ["path"] = m.Path,
            ["family"] = m.Family,
            ["architecture"] = m.Architecture,
            ["config_sha256"] = m.ConfigSha256,
            ["tokenizer"] = m.Tokenizer,
            ["num_layers"] = m.NumLayers,
            ["num_experts"] = m.NumExperts,
            ["top_k"] = m.TopK,
            ["hidden_size"] = m.HiddenSize,
            ["expert_intermediate_size"] = m.ExpertIntermediateSize,
        };
        JsonObject? data = null;
        if (p.Data is { } d)
            data = new JsonObject
            {
                ["files"] = new JsonArray(d.Files.Select(f => (JsonNode?)f).ToArray()),
                ["documents"] = d.Documents,
                ["samples"] = d.Sequences,
                ["seq_len"] = d.SeqLen,
                ["seed"] = d.Seed,
                ["sampling"] = d.Sampling,
                ["stream_tokens"] = d.StreamTokens,
                ["bos_prepended"] = d.BosPrepended,
                ["description"] = d.Description,
            };

        var layers = new JsonArray();
        foreach (var l in p.Layers)
        {
            var experts = new JsonArray();
            for (var e = 0; e < l.NumExperts; e++)
                experts.Add(new JsonObject
                {
                    ["expert"] = e,
                    ["selection_count"] = l.SelectionCount[e],
                    ["frequency"] = Num(l.Frequency(e)),
                    ["routing_weight_mass"] = Num(l.RoutingWeightMass[e]),
                    ["gate_weight_mass"] = Num(l.GateWeightMass[e]),
                    ["tcess"] = Num(l.Tcess[e]),
                    ["reap"] = Num(l.Reap[e]),
                    ["max_abs_output"] = Num(l.MaxAbsOutput[e]),
                    ["routed_tokens"] = l.RoutedTokens[e],
                    ["cold"] = p.Coverage.IsCold(l.Layer, e),
                    ["super"] = p.SuperExperts.IsSuper(l.Layer, e),
                });
            layers.Add(new JsonObject
            {
                ["layer"] = l.Layer,
                ["tokens"] = l.Tokens,
                ["num_experts"] = l.NumExperts,
                ["top_k"] = l.TopK,
                ["hidden_size"] = l.HiddenSize,
                ["intermediate_size"] = l.IntermediateSize,
                ["mean_output_all_tokens"] = l.HasMeanOutputAllTokens,
                ["experts"] = experts,
            });
        }

        var s = p.SuperExperts;
        var c = p.Coverage;
        return new JsonObject
        {
            ["format"] = CalibrationProfile.FormatName,
            ["format_version"] = CalibrationProfile.FormatVersion,
            ["tool_version"] = p.ToolVersion,
            ["created_utc"] = p.CreatedUtc.ToString("O", CultureInfo.InvariantCulture),
            ["model"] = model,
            ["data"] = data,
            ["tokens"] = p.Tokens,
            ["options"] = OptionsJson(p.Options),
            ["tensors"] = new JsonObject
            {
                ["file"] = CalibrationProfile.TensorFileName,
                ["router_logits"] = p.RouterLogits is null ? null : $"{CalibrationProfile.RouterLogitsFolder}/{CalibrationProfile.RouterLogitsFileName}",
            },
            ["definitions"] = new JsonObject
            {
                ["selection_count"] = "n_i: tokens whose top-k holds expert i",
                ["frequency"] = "n_i / N",
                ["routing_weight_mass"] = "sum over tokens selecting i of the router score p (softmax or sigmoid of the logits, before top-k renormalisation and scaling; DeepSeek-V3 without the correction bias)",
                ["gate_weight_mass"] = "sum over tokens selecting i of the final gate weight g (renormalised and scaled as the model does)",
                ["tcess"] = "PreMoe: (1/N) sum over tokens selecting i of the router logit z",
                ["reap"] = "REAP: mean over tokens routed to i of g * ||f_i(x)||_2",
                ["max_abs_output"] = "max over tokens routed to i of max_j |f_i(x)_j| (down_proj output, before the gate)",
                ["coselection"] = "C_ij: tokens whose top-k holds both i and j (diagonal n_i)",
                ["mean_output"] = "mean of f_i(x) over tokens routed to i",
            },
            ["layers"] = layers,
            ["super_experts"] = new JsonObject
            {
                ["rule"] = $"max |down_proj output| > p{SuperExpertReport.Percentile} of all experts' maxima and > {SuperExpertReport.GlobalMaxFraction} x global max, layer < {SuperExpertReport.LayerFraction} x layers",
                ["percentile_99_5"] = Num(s.Percentile995),
                ["global_max"] = Num(s.GlobalMax),
                ["layer_limit"] = s.LayerLimit,
                ["experts"] = new JsonArray(s.Experts.Select(x => (JsonNode?)new JsonObject
                {
                    ["layer"] = x.Layer, ["expert"] = x.Expert, ["max_abs_output"] = Num(x.MaxAbsOutput),
                }).ToArray()),
            },
            ["coverage"] = new JsonObject
            {
                ["cold_threshold"] = c.ColdThreshold,
                ["unused_experts"] = c.UnusedExperts,
                ["cold_experts"] = new JsonArray(c.ColdExperts.Select(x => (JsonNode?)new JsonObject
                {
                    ["layer"] = x.Layer, ["expert"] = x.Expert, ["routed_tokens"] = x.RoutedTokens,
                }).ToArray()),
            },
        };
    }

    // ------------------------------------------------------------------ load

    private static string ResolveDirectory(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        var full = Path.GetFullPath(path);
        if (Directory.Exists(full)) return full;
        if (File.Exists(full)) return Path.GetDirectoryName(full)!;
        throw new MoeCompressException(ErrorKind.Io, $"{full}: calibration profile not found");
    }

    public static CalibrationProfile Load(string path)
    {
        var dir = ResolveDirectory(path);
        var jsonPath = Path.Combine(dir, CalibrationProfile.SummaryFileName);
        var tensorPath = Path.Combine(dir, CalibrationProfile.TensorFileName);
        if (!File.Exists(jsonPath))
            throw new MoeCompressException(ErrorKind.Io, $"{jsonPath}: calibration profile summary not found");
        if (!File.Exists(tensorPath))
            throw new MoeCompressException(ErrorKind.Io, $"{tensorPath}: calibration profile tensors not found");

        JsonObject root;
        try
        {
            root = JsonNode.Parse(File.ReadAllText(jsonPath)) as JsonObject
                   ?? throw new CheckpointFormatException(jsonPath, null, null, "not a JSON object");
        }
        catch (JsonException ex)
        {
            throw new CheckpointFormatException(jsonPath, null, null, $"malformed JSON: {ex.Message}");
        }
        var j = new JsonFields(jsonPath);
        var format = j.String(root, "format");
        if (format != CalibrationProfile.FormatName)
            throw new CheckpointFormatException(jsonPath, null, null, $"'format' is '{format}', expected '{CalibrationProfile.FormatName}'");
        var version = j.Int(root, "format_version");
        if (version is < 1 or > CalibrationProfile.FormatVersion)
            throw new CheckpointFormatException(jsonPath, null, null, $"format_version {version} is not supported (this tool reads 1 to {CalibrationProfile.FormatVersion})");

        var m = j.Object(root, "model");
        var model = new CalibrationModelInfo
        {
            Path = j.OptString(m, "path"),
            Family = j.String(m, "family"),
            Architecture = j.String(m, "architecture"),
            ConfigSha256 = j.OptString(m, "config_sha256"),
            Tokenizer = j.OptString(m, "tokenizer"),
            NumLayers = j.Int(m, "num_layers"),
            NumExperts = j.Int(m, "num_experts"),
            TopK = j.Int(m, "top_k"),
            HiddenSize = j.Int(m, "hidden_size"),
            ExpertIntermediateSize = j.Int(m, "expert_intermediate_size"),
        };
        CalibrationDataInfo? data = null;
        if (root["data"] is JsonObject d)
            data = new CalibrationDataInfo
            {
                Files = (d["files"] as JsonArray ?? []).Select(f => f?.GetValue<string>() ?? "").ToArray(),
                Documents = j.Int(d, "documents"),
                Sequences = j.Int(d, "samples"),
                SeqLen = j.Int(d, "seq_len"),
                Seed = j.Int(d, "seed"),
                Sampling = j.OptString(d, "sampling"),
                StreamTokens = j.Long(d, "stream_tokens"),
                BosPrepended = d["bos_prepended"]?.GetValue<bool>() ?? false,
                Description = j.OptString(d, "description"),
            };
        var o = j.Object(root, "options");
        var options = new CalibrationCollectorOptions
        {
            MeanOutputOverAllTokens = o["mean_output_over_all_tokens"]?.GetValue<bool>() ?? false,
            KeepRouterLogits = o["keep_router_logits"]?.GetValue<bool>() ?? false,
            ColdThreshold = o["cold_threshold"] is JsonValue ct ? ct.GetValue<double>() : null,
        };

        // Vectors and E×E matrices are read now; the E×H mean outputs (the bulk of a profile) when a step first asks.
        var layers = new List<MoELayerStatistics>();
        using (var file = SafetensorsFile.Open(tensorPath))
        {
            var reader = new ProfileTensorReader(file, jsonPath);
            foreach (var node in root["layers"] as JsonArray ?? throw new CheckpointFormatException(jsonPath, null, null, "'layers' is missing"))
            {
                var lj = node as JsonObject ?? throw new CheckpointFormatException(jsonPath, null, null, "'layers' holds a non-object entry");
                int l = j.Int(lj, "layer"), e = j.Int(lj, "num_experts"), h = j.Int(lj, "hidden_size"), inter = j.Int(lj, "intermediate_size");
                reader.Check(ProfileTensorNames.MeanOutput(l), SafetensorsDType.F32, e, h);
                var all = lj["mean_output_all_tokens"]?.GetValue<bool>() == true;
                if (all) reader.Check(ProfileTensorNames.MeanOutputAllTokens(l), SafetensorsDType.F32, e, h);
                layers.Add(new MoELayerStatistics(l, e, j.Int(lj, "top_k"), h, inter, j.Long(lj, "tokens"),
                    reader.Read<long>(ProfileTensorNames.SelectionCount(l), SafetensorsDType.I64, e),
                    reader.Read<long>(ProfileTensorNames.RoutedTokens(l), SafetensorsDType.I64, e),
                    reader.Read<double>(ProfileTensorNames.RoutingWeightMass(l), SafetensorsDType.F64, e),
                    reader.Read<double>(ProfileTensorNames.GateWeightMass(l), SafetensorsDType.F64, e),
                    reader.Read<double>(ProfileTensorNames.Tcess(l), SafetensorsDType.F64, e),
                    reader.Read<double>(ProfileTensorNames.Reap(l), SafetensorsDType.F64, e),
                    reader.Read<double>(ProfileTensorNames.MaxAbsOutput(l), SafetensorsDType.F64, e),
                    reader.Read<long>(ProfileTensorNames.Coselection(l), SafetensorsDType.I64, e, e),
                    () => ReadLater(tensorPath, jsonPath, ProfileTensorNames.MeanOutput(l), e, h),
                    all ? () => ReadLater(tensorPath, jsonPath, ProfileTensorNames.MeanOutputAllTokens(l), e, h) : null));
            }
        }

        var created = DateTimeOffset.TryParse(j.OptString(root, "created_utc"), CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var c)
            ? c : DateTimeOffset.MinValue;
        return CalibrationProfile.Create(model, data, options, layers, j.OptString(root, "tool_version") ?? "unknown", created);
    }

    public static RouterLogitDump LoadRouterLogits(string path)
    {
        var dir = ResolveDirectory(path);
        var file = Path.Combine(dir, CalibrationProfile.RouterLogitsFolder, CalibrationProfile.RouterLogitsFileName);
        if (!File.Exists(file))
            throw new MoeCompressException(ErrorKind.Io, $"{file}: no router-logit dump (calibrate with --dump-router-logits)");
        using var st = SafetensorsFile.Open(file);
        var reader = new ProfileTensorReader(st, file);
        if (!st.Contains(RouterLogitDump.SequenceLengthsName))
            throw new CheckpointFormatException(file, RouterLogitDump.SequenceLengthsName, null, "missing from the router-logit dump");
        var lengths = reader.Read<long>(RouterLogitDump.SequenceLengthsName, SafetensorsDType.I64, st.GetInfo(RouterLogitDump.SequenceLengthsName).Shape);
        var seqLengths = lengths.Select(l => checked((int)l)).ToArray();
        long n = lengths.Sum();
        List<int[]>? ids = null;
        if (st.Contains(RouterLogitDump.TokenIdsName))
        {
            var flat = reader.Read<long>(RouterLogitDump.TokenIdsName, SafetensorsDType.I64, n);
            ids = new List<int[]>();
            long at = 0;
            foreach (var len in seqLengths)
            {
                ids.Add(flat.Skip((int)at).Take(len).Select(v => (int)v).ToArray());
                at += len;
            }
        }
        var layers = new Dictionary<int, float[]>();
        int experts = 0;
        foreach (var name in st.Names)
        {
            if (!name.StartsWith("layers.", StringComparison.Ordinal) || !name.EndsWith(".router_logits", StringComparison.Ordinal)) continue;
            var layer = int.Parse(name["layers.".Length..name.IndexOf('.', "layers.".Length)], CultureInfo.InvariantCulture);
            var shape = st.GetInfo(name).Shape;
            if (shape.Length != 2) throw new CheckpointFormatException(file, name, null, $"has shape [{string.Join(", ", shape)}], expected [N, E]");
            experts = (int)shape[1];
            layers[layer] = reader.Read<float>(name, SafetensorsDType.F32, n, shape[1]);
        }
        return new RouterLogitDump(seqLengths, experts, layers, ids);
    }

    /// <summary>Reads typed arrays from the profile's safetensors file, checking presence, dtype and shape.</summary>
    /// <summary>Reads one float32 tensor of a saved profile on demand (the file is mapped only for the read).</summary>
    private static float[] ReadLater(string tensorPath, string summaryPath, string name, params long[] shape)
    {
        try
        {
            using var file = SafetensorsFile.Open(tensorPath);
            return new ProfileTensorReader(file, summaryPath).Read<float>(name, SafetensorsDType.F32, shape);
        }
        catch (FileNotFoundException ex)
        {
            throw new MoeCompressException(ErrorKind.Io, $"{tensorPath}: calibration profile tensors disappeared while in use", ex);
        }
    }

    private sealed class ProfileTensorReader(SafetensorsFile file, string summaryPath)
    {
        /// <summary>Throws unless <paramref name="name"/> exists with this dtype and shape.</summary>
        public void Check(string name, SafetensorsDType dtype, params long[] shape)
        {
            if (!file.Contains(name))
                throw new CheckpointFormatException(file.Path, name, null,
                    $"missing from the calibration profile ({Path.GetFileName(summaryPath)} implies it)");
            var info = file.GetInfo(name);
            if (info.DType != dtype || !info.Shape.SequenceEqual(shape))
                throw new CheckpointFormatException(file.Path, name, null,
                    $"is {info.DType} [{string.Join(", ", info.Shape)}], expected {dtype} [{string.Join(", ", shape)}]");
        }

        public T[] Read<T>(string name, SafetensorsDType dtype, params long[] shape) where T : struct
        {
            Check(name, dtype, shape);
            return MemoryMarshal.Cast<byte, T>(file.GetBytes(name)).ToArray();
        }
    }

    /// <summary>Typed access to profile.json fields with errors naming the file and key.</summary>
    private sealed class JsonFields(string path)
    {
        private CheckpointFormatException Bad(string key, string problem) => new(path, null, null, $"'{key}' {problem}");

        public JsonObject Object(JsonObject o, string key) => o[key] as JsonObject ?? throw Bad(key, "is missing or not an object");

        public string String(JsonObject o, string key) => OptString(o, key) ?? throw Bad(key, "is missing");

        public string? OptString(JsonObject o, string key) =>
            o[key] is JsonValue v && v.TryGetValue<string>(out var s) ? s : null;

        public long Long(JsonObject o, string key) =>
            o[key] is JsonValue v && v.TryGetValue<long>(out var x) ? x : throw Bad(key, "is missing or not an integer");

        public int Int(JsonObject o, string key) => checked((int)Long(o, key));
    }
}
