using System.Diagnostics;
using MoECompress.Compression.Data;
using MoECompress.Compression.Model;
using MoECompress.Compression.Reporting;
using MoECompress.Compression.Tokenization;
using MoECompress.Formats.Errors;
using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Compression.Evaluation;

/// <summary>
/// Measures a model on held-out text: sliding-window perplexity (<see cref="SlidingWindowPlan"/>) and, against a base
/// model with the same vocabulary, mean KL(base ‖ model), top-1 agreement and the relative error of every decoder
/// layer's hidden states (<see cref="LayerError"/>).
/// </summary>
/// <remarks>
/// Memory: the windows are streamed through the decoder one layer at a time (<see cref="StreamingSession"/>); with a
/// base model both sessions advance in lockstep, so only the current layer of each model is resident and the two
/// models' hidden states can be compared after every layer. Logits are never held for more than one chunk of rows:
/// both models' final hidden states are kept, and their logits are computed and reduced chunk by chunk.
/// </remarks>
public static class Evaluator
{
    /// <summary>The version written into reports.</summary>
    public static string ToolVersion { get; } = typeof(Evaluator).Assembly.GetName().Version?.ToString(3) ?? "0.0.0";

    /// <summary>
    /// Opens the model (and base), tokenizes the held-out text with the model's tokenizer and evaluates it on a worker
    /// thread. Progress lines describe each stage.
    /// </summary>
    /// <exception cref="MoeCompressException">A folder, config, checkpoint or data problem, bad options, a model family
    /// without a forward pass, or a base whose vocabulary differs from the model's.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public static Task<EvaluationReport> RunAsync(EvaluateOptions options, IProgress<string>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        return Task.Run(() => Run(options, progress, cancellationToken), cancellationToken);
    }

    /// <summary>The synchronous form of <see cref="RunAsync"/>.</summary>
    public static EvaluationReport Run(EvaluateOptions options, IProgress<string>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (string.IsNullOrWhiteSpace(options.Model))
            throw new MoeCompressException(ErrorKind.Usage, "no model folder given");
        if (options.MaxTokens is <= 1)
            throw new MoeCompressException(ErrorKind.Usage, $"--max-tokens {options.MaxTokens}: must be at least 2");
        if (options.MicroBatch is <= 0)
            throw new MoeCompressException(ErrorKind.Usage, $"--micro-batch {options.MicroBatch}: must be positive");
        if (options.Context is < 2)
            throw new MoeCompressException(ErrorKind.Usage, $"--context {options.Context}: a window needs at least 2 tokens");
        if (options.MaxResidentHiddenStateBytes is < 0)
            throw new MoeCompressException(ErrorKind.Usage, $"hidden-state memory limit {options.MaxResidentHiddenStateBytes}: must not be negative");
        var clock = Stopwatch.StartNew();

        var skipping = options.SkipPlan is { } planPath ? new Substitution.ExpertSkipping(Substitution.SkipPlan.Load(planPath)) : null;
        using var model = EvaluationCheckpoint.Open(options.Model, "model", skipping);
        if (skipping is not null)
            foreach (var rule in skipping.Rules)
                if (rule.Layer >= model.Engine.Config.NumLayers || !model.Engine.MoE.IsMoELayer[rule.Layer])
                    throw new MoeCompressException(ErrorKind.Usage,
                        $"--skip-plan {Path.GetFullPath(options.SkipPlan!)}: layer {rule.Layer} is not a MoE layer of {model.Directory}");
        using var baseModel = options.Base is null ? null : EvaluationCheckpoint.Open(options.Base, "--base");
        if (baseModel is not null) EnsureSameVocabulary(model.Engine, baseModel.Engine, model.Directory, baseModel.Directory);

        using var tokenizer = LoadTokenizer(model.Directory, baseModel?.Directory);
        if (tokenizer.VocabSize > model.Engine.Config.VocabSize)
            throw new MoeCompressException(ErrorKind.InvalidConfig,
                $"{model.Directory}: the tokenizer ({tokenizer.Name}) has {tokenizer.VocabSize} ids but config.json vocab_size is {model.Engine.Config.VocabSize}");

        var data = options.Data ?? BundledData.LocateHeldOutText()
                   ?? throw new MoeCompressException(ErrorKind.Usage,
                       $"no --data given and no bundled held-out text found ({BundledData.Searched(BundledData.HeldOutText)})");
        data = Path.GetFullPath(data);
        progress?.Report($"tokenizing {data}");
        var text = EvaluationText.Load(data, tokenizer, options.AddBos, progress: progress, cancellationToken: cancellationToken);
        var tokens = text.Tokens;
        if (options.MaxTokens is { } cap && tokens.Length > cap) tokens = tokens[..cap];

        var context = ResolveContext(options.Context, model.Engine, baseModel?.Engine);
        var stride = options.Stride ?? Math.Max(1, context / 2);
        var streaming = new StreamingOptions();
        streaming = streaming with
        {
            MicroBatchTokens = options.MicroBatch ?? streaming.MicroBatchTokens,
            MaxResidentHiddenStateBytes = options.MaxResidentHiddenStateBytes ?? streaming.MaxResidentHiddenStateBytes,
            SpillDirectory = options.SpillDirectory,
        };
        var settings = new EvaluationSettings(context, stride) { Streaming = streaming };
        var metrics = Measure(model.Engine, baseModel?.Engine, tokens, settings, progress, cancellationToken);

        return new EvaluationReport
        {
            ToolVersion = ToolVersion,
            Model = model.Describe(),
            Base = baseModel?.Describe(),
            DataPath = data,
            DataFiles = text.Files.Select(Path.GetFullPath).ToArray(),
            Documents = text.Documents,
            Tokenizer = tokenizer.Name,
            BosPrepended = text.BosPrepended,
            TextTokens = text.Tokens.Length,
            MaxTokens = options.MaxTokens,
            MicroBatchTokens = streaming.MicroBatchTokens,
            Metrics = metrics,
            ElapsedSeconds = clock.Elapsed.TotalSeconds,
            CompressedExpertsAux = model.Engine.Config.CompressedExperts?.Aux,
            SkipPlanPath = options.SkipPlan is null ? null : Path.GetFullPath(options.SkipPlan),
            Skipping = skipping?.Rules.Select(Substitution.ExpertSkipLayerReport.Of).ToList() ?? [],
        };
    }

    /// <summary>
    /// Evaluates <paramref name="model"/> on a token stream (and compares it with <paramref name="baseModel"/> when
    /// given). The core of <see cref="Run"/>, usable on engines built in memory.
    /// </summary>
    /// <param name="model">The model to evaluate.</param>
    /// <param name="baseModel">The reference model, or null; it must have the same vocabulary size.</param>
    /// <param name="tokens">The token stream (ids of the model's tokenizer).</param>
    /// <param name="settings">Context, stride and streaming settings.</param>
    /// <param name="progress">One line per stage / layer.</param>
    /// <param name="cancellationToken">Checked between micro-batches, layers and chunks.</param>
    public static EvaluationMetrics Measure(ModelEngine model, ModelEngine? baseModel, IReadOnlyList<int> tokens,
        EvaluationSettings settings, IProgress<string>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokens);
        ArgumentNullException.ThrowIfNull(settings);
        if (settings.MaxLogitsElementsPerChunk <= 0)
            throw new ArgumentOutOfRangeException(nameof(settings), settings.MaxLogitsElementsPerChunk, "MaxLogitsElementsPerChunk must be positive");
        if (baseModel is not null) EnsureSameVocabulary(model, baseModel, null, null);
        var plan = SlidingWindowPlan.Create(tokens.Count, settings.Context, settings.Stride);
        var windows = plan.Windows;
        var sequences = new IReadOnlyList<int>[windows.Count];
        for (var i = 0; i < windows.Count; i++)
        {
            var w = new int[windows[i].Length];
            for (var j = 0; j < w.Length; j++) w[j] = tokens[windows[i].Start + j];
            sequences[i] = w;
        }

        var notes = new List<string>();
        progress?.Report($"{tokens.Count:N0} tokens: {windows.Count:N0} window(s) of context {plan.Context}, stride {plan.Stride}, {plan.TargetCount:N0} tokens scored");
        using var noGrad = no_grad();
        var label = baseModel is null ? "" : "model: ";
        using var modelSession = new StreamingRunner(model, settings.Streaming)
            .Start(sequences, StageProgress.For(progress, label), cancellationToken);
        using var baseSession = baseModel is null ? null : new StreamingRunner(baseModel, settings.Streaming)
            .Start(sequences, StageProgress.For(progress, "base: "), cancellationToken);

        var layerErrors = new List<LayerError>();
        bool compareLayers = false;
        if (baseSession is not null)
        {
            compareLayers = baseSession.NumLayers == modelSession.NumLayers && baseModel!.Config.HiddenSize == model.Config.HiddenSize;
            if (!compareLayers)
                notes.Add($"no per-layer hidden-state errors: the base has {baseSession.NumLayers} layers of width {baseModel!.Config.HiddenSize}, " +
                          $"the model {modelSession.NumLayers} of width {model.Config.HiddenSize}");
        }
        var layers = Math.Max(modelSession.NumLayers, baseSession?.NumLayers ?? 0);
        for (var l = 0; l < layers; l++)
        {
            if (baseSession is not null && !baseSession.AllLayersDone) baseSession.RunNextLayer(null, cancellationToken);
            if (!modelSession.AllLayersDone) modelSession.RunNextLayer(null, cancellationToken);
            if (compareLayers)
            {
                var error = CompareLayer(l, windows, modelSession, baseSession!, cancellationToken);
                layerErrors.Add(error);
                progress?.Report($"layer {l + 1}/{layers}: relative hidden-state error {error.RelativeError:G4}");
            }
            else
                progress?.Report($"layer {l + 1}/{layers} done");
        }

        var scores = Score(plan, tokens, model, modelSession, baseModel, baseSession, settings, progress, cancellationToken);
        long n = plan.TargetCount;
        return new EvaluationMetrics
        {
            Context = plan.Context,
            Stride = plan.Stride,
            Windows = windows.Count,
            StreamTokens = tokens.Count,
            TokensScored = n,
            MeanNll = scores.Nll / n,
            BaseMeanNll = baseModel is null ? null : scores.BaseNll / n,
            MeanKl = baseModel is null ? null : scores.Kl / n,
            MaxKl = baseModel is null ? null : scores.MaxKl,
            Top1Agreement = baseModel is null ? null : (double)scores.Agreements / n,
            LayerErrors = layerErrors,
            Notes = notes,
        };
    }

    /// <summary>Forwards the start of each layer (and the end of embedding) of a streaming run as a line; not every micro-batch.</summary>
    private sealed class StageProgress(IProgress<string> target, string label) : IProgress<StreamingProgress>
    {
        public static StageProgress? For(IProgress<string>? target, string label) => target is null ? null : new(target, label);

        public void Report(StreamingProgress value)
        {
            if (target.AcceptsUpdates()) target.ReportUpdate(value.ToUpdate("evaluate", label));
            else if (value.Stage == StreamingStage.LoadingLayer ||
                (value.Stage == StreamingStage.Embedding && value.SequencesDone == value.SequencesTotal))
                target.Report(label + value);
        }
    }

    private sealed class ScoreSums
    {
        public double Nll, BaseNll, Kl, MaxKl;
        public long Agreements;
    }

    /// <summary>Final norm + lm_head of both models chunk by chunk over the scored rows of every window.</summary>
    private static ScoreSums Score(SlidingWindowPlan plan, IReadOnlyList<int> tokens, ModelEngine model, StreamingSession modelSession,
        ModelEngine? baseModel, StreamingSession? baseSession, EvaluationSettings settings, IProgress<string>? progress, CancellationToken ct)
    {
        var sums = new ScoreSums();
        using var modelHead = model.LoadHead();
        using var baseHead = baseModel?.LoadHead();
        if (baseHead is not null && baseHead.VocabSize != modelHead.VocabSize)
            throw new MoeCompressException(ErrorKind.Usage,
                $"--base: its output projection has {baseHead.VocabSize} rows, the model's {modelHead.VocabSize}; KL needs the same vocabulary");
        var rowsPerChunk = (int)Math.Clamp(settings.MaxLogitsElementsPerChunk / modelHead.VocabSize, 1, settings.Streaming.HeadChunkTokens);
        var windows = plan.Windows;
        var reportEvery = Math.Max(1, windows.Count / 10);
        for (var s = 0; s < windows.Count; s++)
        {
            ct.ThrowIfCancellationRequested();
            using var scope = NewDisposeScope();
            var w = windows[s];
            var hModel = modelSession.ReadHiddenStates(s);
            var hBase = baseSession?.ReadHiddenStates(s);
            for (var done = 0; done < w.TargetCount; done += rowsPerChunk)
            {
                ct.ThrowIfCancellationRequested();
                using var inner = NewDisposeScope();
                var rows = Math.Min(rowsPerChunk, w.TargetCount - done);
                var row = w.ScoringRow + done;
                var targetIds = new long[rows];
                for (var i = 0; i < rows; i++) targetIds[i] = tokens[w.FirstTarget + done + i];
                var targets = tensor(targetIds, ScalarType.Int64).unsqueeze(1);
                var lpModel = modelHead.Logits(hModel.narrow(0, row, rows)).log_softmax(-1);
                sums.Nll -= lpModel.gather(1, targets).to(ScalarType.Float64).sum().item<double>();
                if (baseHead is not null)
                {
                    var lpBase = baseHead.Logits(hBase!.narrow(0, row, rows)).log_softmax(-1);
                    sums.BaseNll -= lpBase.gather(1, targets).to(ScalarType.Float64).sum().item<double>();
                    var kl = (lpBase.exp() * (lpBase - lpModel)).sum(-1).to(ScalarType.Float64);
                    sums.Kl += kl.sum().item<double>();
                    sums.MaxKl = Math.Max(sums.MaxKl, kl.max().item<double>());
                    sums.Agreements += lpBase.argmax(-1).eq(lpModel.argmax(-1)).sum().item<long>();
                }
            }
            if ((s + 1) % reportEvery == 0 || s + 1 == windows.Count || progress.AcceptsUpdates())
                progress.ReportUpdate(new ProgressUpdate("score", $"scoring: {s + 1}/{windows.Count} windows") { Done = s + 1, Total = windows.Count, Unit = "windows" });
        }
        return sums;
    }

    /// <summary>Relative error of one layer's outputs over the scored rows of every window (see <see cref="LayerError"/>).</summary>
    private static LayerError CompareLayer(int layer, IReadOnlyList<SlidingWindow> windows, StreamingSession modelSession,
        StreamingSession baseSession, CancellationToken ct)
    {
        double diffSquares = 0, baseSquares = 0, tokenRatios = 0;
        long count = 0;
        for (var s = 0; s < windows.Count; s++)
        {
            ct.ThrowIfCancellationRequested();
            using var scope = NewDisposeScope();
            var w = windows[s];
            var hBase = baseSession.ReadHiddenStates(s).narrow(0, w.ScoringRow, w.TargetCount).to(ScalarType.Float64);
            var hModel = modelSession.ReadHiddenStates(s).narrow(0, w.ScoringRow, w.TargetCount).to(ScalarType.Float64);
            var diffRow = (hModel - hBase).Squared().sum(-1);
            var baseRow = hBase.Squared().sum(-1);
            diffSquares += diffRow.sum().item<double>();
            baseSquares += baseRow.sum().item<double>();
            tokenRatios += (diffRow.sqrt() / baseRow.sqrt().AtLeast(double.Epsilon)).sum().item<double>();
            count += w.TargetCount;
        }
        var relative = baseSquares > 0 ? Math.Sqrt(diffSquares / baseSquares) : diffSquares == 0 ? 0 : double.PositiveInfinity;
        return new LayerError(layer, relative, count == 0 ? 0 : tokenRatios / count);
    }

    private static void EnsureSameVocabulary(ModelEngine model, ModelEngine baseModel, string? modelDir, string? baseDir)
    {
        if (model.Config.VocabSize != baseModel.Config.VocabSize)
            throw new MoeCompressException(ErrorKind.Usage,
                $"the base model{(baseDir is null ? "" : $" (--base {baseDir})")} has vocab_size {baseModel.Config.VocabSize}, " +
                $"the model{(modelDir is null ? "" : $" ({modelDir})")} has {model.Config.VocabSize}; " +
                "KL and top-1 agreement need both models to share one tokenizer and vocabulary");
    }

    /// <summary>The model's tokenizer; the base's when the model folder has none; checks that the two agree when both have one.</summary>
    private static ITextTokenizer LoadTokenizer(string modelDir, string? baseDir)
    {
        static bool HasTokenizer(string dir) => TokenizerLoader.CandidateFiles.Any(f => File.Exists(Path.Combine(dir, f)));
        if (baseDir is null) return TokenizerLoader.Load(modelDir);
        if (!HasTokenizer(modelDir)) return HasTokenizer(baseDir) ? TokenizerLoader.Load(baseDir) : TokenizerLoader.Load(modelDir);
        var tokenizer = TokenizerLoader.Load(modelDir);
        if (HasTokenizer(baseDir) && !SameTokenizerFile(modelDir, baseDir))
        {
            using var baseTokenizer = TokenizerLoader.Load(baseDir);
            if (baseTokenizer.VocabSize != tokenizer.VocabSize)
            {
                var message = $"--base {baseDir}: its tokenizer has {baseTokenizer.VocabSize} ids, the model's ({modelDir}) {tokenizer.VocabSize}; " +
                              "KL and top-1 agreement need both models to share one tokenizer";
                tokenizer.Dispose();
                throw new MoeCompressException(ErrorKind.Usage, message);
            }
        }
        return tokenizer;
    }

    /// <summary>True when the tokenizer file the loader would pick in <paramref name="modelDir"/> is byte-identical in <paramref name="baseDir"/>.</summary>
    private static bool SameTokenizerFile(string modelDir, string baseDir)
    {
        var name = TokenizerLoader.CandidateFiles.First(f => File.Exists(Path.Combine(modelDir, f)));
        var a = new FileInfo(Path.Combine(modelDir, name));
        var b = new FileInfo(Path.Combine(baseDir, name));
        if (!b.Exists || a.Length != b.Length) return false;
        return File.ReadAllBytes(a.FullName).AsSpan().SequenceEqual(File.ReadAllBytes(b.FullName));
    }

    /// <summary>The window length: the option, else 512 or the smaller max_position_embeddings of the models.</summary>
    private static int ResolveContext(int? requested, ModelEngine model, ModelEngine? baseModel)
    {
        var limit = model.Config.MaxPositionEmbeddings;
        if (baseModel is not null) limit = Math.Min(limit, baseModel.Config.MaxPositionEmbeddings);
        if (requested is { } c)
        {
            if (c > limit)
                throw new MoeCompressException(ErrorKind.Usage,
                    $"--context {c}: exceeds max_position_embeddings {limit} of the model{(baseModel is null ? "" : " or base")}");
            return c;
        }
        return Math.Max(2, Math.Min(EvaluateOptions.DefaultContext, limit));
    }
}
