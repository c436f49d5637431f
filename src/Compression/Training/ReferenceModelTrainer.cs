using System.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;

namespace MoECompress.Compression.Training;

/// <summary>
/// Trains the bundled reference MoE: a small Mixtral-architecture model on the domain texts, with AdamW, warm-up +
/// cosine learning rate, gradient clipping, the load-balancing loss and an optional router z-loss, on the CPU.
/// <para>Determinism: weights are initialised from a generator seeded with <see cref="ReferenceModelOptions.Seed"/>
/// (independent of torch's global RNG), the data order is a SplitMix64 shuffle of that seed and the run length is a
/// fixed step count. Re-running with the same options, data, thread count, machine and libtorch build gives
/// bit-identical weights; a different thread count may change floating-point reduction order and hence the last
/// bits of the result.</para>
/// </summary>
public static class ReferenceModelTrainer
{
    /// <summary>
    /// Tokenizes the training text, trains, and writes the Hugging Face checkpoint (bf16 model.safetensors,
    /// config.json, generation_config.json, tokenizer.model, tokenizer_config.json) plus training-loss.csv to
    /// <see cref="ReferenceModelOptions.OutputDirectory"/>.
    /// <para>Resumable: training checkpoints go to <see cref="ReferenceModelOptions.CheckpointFolder"/> (see
    /// <see cref="TrainModel"/> for when); the folder is deleted once the output is in place. With
    /// <see cref="ReferenceModelOptions.Resume"/> the run continues from its latest checkpoint, refusing one written
    /// with other options (named in the error), and ends with the same files as an uninterrupted run; without it an
    /// existing checkpoint folder is an error.</para>
    /// </summary>
    public static ReferenceTrainingResult Train(ReferenceModelOptions options, IProgress<ReferenceTrainingProgress>? progress = null,
        CancellationToken ct = default)
    {
        options.Validate();
        EnsureOutputDirectoryUsable(options.OutputDirectory);
        var store = new TrainingCheckpoints(options.CheckpointFolder());
        string? resumeFrom = null;
        if (options.Resume)
            resumeFrom = store.Latest() ?? throw new MoECompress.Formats.Errors.MoeCompressException(MoECompress.Formats.Errors.ErrorKind.Usage,
                $"--resume: no checkpoint to continue from in '{store.Folder}'");
        else if (Directory.Exists(store.Folder))
            throw new MoECompress.Formats.Errors.MoeCompressException(MoECompress.Formats.Errors.ErrorKind.Usage,
                $"checkpoint folder '{store.Folder}' of an earlier run exists: add --resume to continue it, or delete it to start over");
        // What the result depends on, checked before the (slow) tokenization where it can be.
        var fingerprint = options.ResumeFingerprint(options.Threads > 0 ? options.Threads : torch.get_num_threads()).ToList();
        fingerprint.Add(new("--tokenizer (SHA-256)", MoECompress.Formats.Safetensors.CheckpointManifest.Sha256Hex(options.TokenizerModelPath, ct)));
        var saved = resumeFrom is null ? null : TrainingCheckpoints.ReadState(resumeFrom);
        if (saved is not null) TrainingCheckpoints.RequireSameOptions(resumeFrom!, saved, fingerprint);

        var encoder = new SentencePieceEncoder(options.TokenizerModelPath);
        var corpus = LoadCorpus(options, encoder, progress, ct);
        var data = new KeyValuePair<string, string>("--train-data tokens (SHA-256)", corpus.ContentSha256());
        if (saved is not null) TrainingCheckpoints.RequireSameOptions(resumeFrom!, saved, [data]);
        fingerprint.Add(data);
        using var trained = TrainModel(options, corpus, encoder.VocabularySize, progress, ct, new TrainingCheckpointPlan(store, fingerprint, resumeFrom));
        if (options.TrainingStatePath is not null)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(options.TrainingStatePath))!);
            trained.Model.save(options.TrainingStatePath);
            File.WriteAllText(options.TrainingStatePath + ".loss.csv", LossCsv(trained.Log));
        }
        progress?.Report(new ReferenceTrainingProgress($"writing the checkpoint to {options.OutputDirectory}"));
        ReferenceCheckpointExporter.Export(trained.Model, encoder, options.TokenizerModelPath, options.OutputDirectory,
            new Dictionary<string, string> { ["training-loss.csv"] = LossCsv(trained.Log) },
            manifestOptions: new System.Text.Json.Nodes.JsonObject { ["train_reference"] = options.ManifestJson() },
            ct: ct, extraFiles: trained.Log.Count == 0 ? null : new Dictionary<string, byte[]> { ["training-loss.png"] = LossCurvePng(trained.Log) });
        store.DeleteFolder();
        var last = trained.Log.Count > 0 ? trained.Log[^1] : null;
        return new ReferenceTrainingResult(options.OutputDirectory, trained.TokensSeen, options.Steps,
            last?.CrossEntropy ?? double.NaN, trained.Log, corpus.Domains.Select(d => (d.Domain, (long)d.Tokens.Length)).ToList());
    }

    /// <summary>training-loss.png: the cross-entropy and the load-balancing loss of the log rows against tokens seen.</summary>
    public static byte[] LossCurvePng(IReadOnlyList<TrainingLogRow> log)
    {
        ArgumentNullException.ThrowIfNull(log);
        var tokens = log.Select(r => r.TokensSeen / 1e6).ToArray();
        return Reporting.ReportFigures.Lines("training loss", [
            ("cross-entropy (nats/token)", tokens, log.Select(r => r.CrossEntropy).ToArray()),
            ("load-balancing loss", tokens, log.Select(r => r.LoadBalancingLoss).ToArray()),
        ], "tokens seen (millions)", "loss");
    }

    /// <summary>Reads <c>&lt;TrainDataDirectory&gt;/&lt;domain&gt;.txt</c> for each domain and tokenizes it into BOS-separated chunks.</summary>
    public static TrainingCorpus LoadCorpus(ReferenceModelOptions options, SentencePieceEncoder encoder,
        IProgress<ReferenceTrainingProgress>? progress = null, CancellationToken ct = default)
    {
        var domains = options.Domains.Count > 0
            ? options.Domains
            : Directory.GetFiles(options.TrainDataDirectory, "*.txt").Select(Path.GetFileNameWithoutExtension).OfType<string>()
                .OrderBy(n => n, StringComparer.Ordinal).ToList();
        if (domains.Count == 0)
            throw new MoECompress.Formats.Errors.MoeCompressException(MoECompress.Formats.Errors.ErrorKind.Usage,
                $"training data folder '{options.TrainDataDirectory}' holds no <domain>.txt files");
        var streams = new List<DomainTokens>();
        foreach (var domain in domains)
        {
            ct.ThrowIfCancellationRequested();
            var path = Path.Combine(options.TrainDataDirectory, domain + ".txt");
            if (!File.Exists(path))
                throw new MoECompress.Formats.Errors.MoeCompressException(MoECompress.Formats.Errors.ErrorKind.Usage,
                    $"training file '{path}' for domain '{domain}' does not exist");
            var tokens = encoder.EncodeDomain(domain, File.ReadLines(path), options.ChunkCharacters, ct);
            progress?.Report(new ReferenceTrainingProgress($"{domain}: {tokens.Documents:N0} chunks, {tokens.Tokens.Length:N0} tokens"));
            streams.Add(tokens);
        }
        foreach (var (domain, repeat) in options.DomainRepeats)
        {
            if (!domains.Contains(domain))
                throw new MoECompress.Formats.Errors.MoeCompressException(MoECompress.Formats.Errors.ErrorKind.Usage,
                    $"--repeat {domain}={repeat}: no domain '{domain}' in '{options.TrainDataDirectory}' (domains: {string.Join(", ", domains)})");
            if (repeat < 1)
                throw new MoECompress.Formats.Errors.MoeCompressException(MoECompress.Formats.Errors.ErrorKind.Usage,
                    $"--repeat {domain}={repeat}: the repeat count must be at least 1");
        }
        var repeats = streams.Select(t => options.DomainRepeats.TryGetValue(t.Domain, out var r) ? r : 1).ToArray();
        return new TrainingCorpus(streams, options.SequenceLength, options.Seed, repeats);
    }

    /// <summary>Runs the optimisation loop for <see cref="ReferenceModelOptions.Steps"/> steps and returns the trained model.</summary>
    /// <remarks>With <paramref name="checkpoints"/>, the run starts from <see cref="TrainingCheckpointPlan.ResumeFrom"/>
    /// when set, writes a checkpoint every <see cref="ReferenceModelOptions.CheckpointEvery"/> steps, every
    /// <see cref="ReferenceModelOptions.CheckpointMinutes"/> minutes, after the last step and when
    /// <paramref name="ct"/> stops it; a resumed run gives bit-identical weights and log rows (wall-time columns apart).</remarks>
    public static TrainedReferenceModel TrainModel(ReferenceModelOptions options, TrainingCorpus corpus, long vocabularySize,
        IProgress<ReferenceTrainingProgress>? progress = null, CancellationToken ct = default, TrainingCheckpointPlan? checkpoints = null)
    {
        if (options.Threads <= 0) return RunTraining(options, corpus, vocabularySize, progress, checkpoints, ct);
        // The thread count is put back afterwards: libtorch keeps it per calling thread (OpenMP), and a later run on
        // this thread at another count would sum in another order — same input, different last digits.
        int previous = torch.get_num_threads();
        torch.set_num_threads(options.Threads);
        try
        {
            return RunTraining(options, corpus, vocabularySize, progress, checkpoints, ct);
        }
        finally
        {
            torch.set_num_threads(previous);
        }
    }

    private static TrainedReferenceModel RunTraining(ReferenceModelOptions options, TrainingCorpus corpus, long vocabularySize,
        IProgress<ReferenceTrainingProgress>? progress, TrainingCheckpointPlan? checkpoints, CancellationToken ct)
    {
        var model = ReferenceTrainingModel.Create(options, vocabularySize, options.Seed);
        try
        {
            model.train();
            var (decay, _) = model.ParameterGroups();
            var named = model.named_parameters().Select(np => (np.name, np.parameter)).ToList();
            var all = named.Select(np => np.parameter).ToList();
            // Non-parameter state that training changes (DeepSeek-V3's correction biases; Mixtral has none).
            var buffers = model.named_buffers().Select(nb => (nb.name, nb.buffer)).ToList();
            // Decoupled weight decay is applied by hand to matrices only (p ← p·(1 − lr·wd), as torch AdamW does),
            // so the optimiser itself runs with weight_decay 0.
            using var optimizer = torch.optim.AdamW(all, lr: options.LearningRate, beta1: options.Beta1, beta2: options.Beta2,
                eps: 1e-8, weight_decay: 0.0);
            var schedule = new CosineLearningRateSchedule(options.LearningRate, options.MinLearningRate, options.WarmupSteps, options.Steps);
            int b = options.BatchSize, t = options.SequenceLength;
            long tokensPerStep = (long)b * t;
            var log = new List<TrainingLogRow>();
            double sumCe = 0, sumAux = 0, sumZ = 0;
            int stepsInRow = 0;
            var clock = Stopwatch.StartNew();
            double clockOffset = 0, rowStart = 0;
            int firstStep = 0;
            if (checkpoints?.ResumeFrom is string resumeFrom)
            {
                var state = TrainingCheckpoints.Restore(resumeFrom, named, optimizer, ct, buffers);
                firstStep = state.Step;
                log = state.Log;
                (stepsInRow, sumCe, sumAux, sumZ) = (state.RowSteps, state.RowCrossEntropySum, state.RowLoadBalancingSum, state.RowZLossSum);
                (clockOffset, rowStart) = (state.ElapsedSeconds, state.RowStartSeconds);
                clock.Restart();
                progress?.Report(new ReferenceTrainingProgress($"resuming after step {firstStep} from {resumeFrom}", null, options.Steps));
            }
            double Now() => clockOffset + clock.Elapsed.TotalSeconds;
            int savedStep = firstStep;
            double savedAt = Now();
            string Save(int completed)
            {
                var path = checkpoints!.Store.Save(new TrainingCheckpointState
                {
                    Step = completed, Options = checkpoints.Options, Log = log,
                    RowSteps = stepsInRow, RowCrossEntropySum = sumCe, RowLoadBalancingSum = sumAux, RowZLossSum = sumZ,
                    ElapsedSeconds = Now(), RowStartSeconds = rowStart,
                    OptimizerSteps = TrainingCheckpoints.OptimizerSteps(named, optimizer),
                }, named, optimizer, buffers);
                savedStep = completed;
                savedAt = Now();
                return path;
            }
            progress?.Report(new ReferenceTrainingProgress(
                $"training {CountParameters(model):N0} parameters ({ExportBytes(model) / 1e6:F1} MB as exported) of layout {ReferenceModelOptions.LayoutName(options.Layout)} on {corpus.WindowCount:N0} windows ({corpus.TokenCount:N0} tokens) for {options.Steps} steps",
                null, options.Steps));

            for (int step = firstStep; step < options.Steps; step++)
            {
                if (ct.IsCancellationRequested)
                {
                    // Observed only between steps, so the state is that of a finished step: save it before stopping.
                    if (checkpoints is not null && step > savedStep)
                        progress?.Report(new ReferenceTrainingProgress(
                            $"stopped after step {step}: checkpoint {Save(step)}; run again with --resume to continue", null, options.Steps));
                    ct.ThrowIfCancellationRequested();
                }
                using var scope = torch.NewDisposeScope();
                double lr = schedule.At(step);
                var ids = torch.tensor(corpus.Batch(step, b), [b, t + 1], ScalarType.Int64);
                var input = ids.narrow(1, 0, t);
                var target = ids.narrow(1, 1, t).reshape(-1);
                var forward = model.Forward(input);
                var ce = nn.functional.cross_entropy(forward.Logits.view(-1, forward.Logits.shape[^1]), target);
                var aux = model.BalanceLoss(forward);
                var z = torch.stack(forward.Routers.Select(r => LoadBalancingLoss.RouterZLoss(r.RouterLogits)).ToArray()).mean();
                var loss = ce.Plus(aux.Times(model.BalanceLossCoefficient));
                if (options.RouterZLossCoefficient > 0) loss = loss.Plus(z.Times(options.RouterZLossCoefficient));

                optimizer.zero_grad();
                loss.backward();
                if (options.GradientClipNorm > 0) nn.utils.clip_grad_norm_(all, options.GradientClipNorm);
                foreach (var group in optimizer.ParamGroups) group.LearningRate = lr;
                if (options.WeightDecay > 0)
                    using (torch.no_grad())
                        foreach (var p in decay) p.Times_(1.0 - lr * options.WeightDecay);
                optimizer.step();
                using (torch.no_grad()) model.AfterOptimizerStep(forward);

                sumCe += ce.item<float>();
                sumAux += aux.item<float>();
                sumZ += z.item<float>();
                stepsInRow++;
                if ((step + 1) % options.LogEvery == 0 || step + 1 == options.Steps)
                {
                    double now = Now();
                    var row = new TrainingLogRow(step + 1, (step + 1) * tokensPerStep, lr, sumCe / stepsInRow, sumAux / stepsInRow,
                        sumZ / stepsInRow, now, stepsInRow * tokensPerStep / Math.Max(1e-9, now - rowStart));
                    log.Add(row);
                    progress?.Report(new ReferenceTrainingProgress(
                        $"step {row.Step}/{options.Steps}  loss {row.CrossEntropy:F4}  aux {row.LoadBalancingLoss:F4}  lr {lr:G3}  {row.TokensPerSecond:F0} tok/s",
                        row, options.Steps));
                    sumCe = sumAux = sumZ = 0;
                    stepsInRow = 0;
                    rowStart = now;
                }
                if (checkpoints is not null && (step + 1 == options.Steps
                        || (options.CheckpointEvery > 0 && (step + 1) % options.CheckpointEvery == 0)
                        || (options.CheckpointMinutes > 0 && Now() - savedAt >= options.CheckpointMinutes * 60)))
                {
                    // The last one guards the export: a failure or Ctrl+C while writing the model loses no training.
                    var path = Save(step + 1);
                    progress?.Report(new ReferenceTrainingProgress($"checkpoint after step {step + 1}: {path}", null, options.Steps));
                }
            }
            model.eval();
            return new TrainedReferenceModel(model, log, options.Steps * tokensPerStep, corpus);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    public static long CountParameters(ReferenceTrainingModel model) => model.parameters().Sum(p => p.numel());

    /// <summary>Bytes of the exported tensors: bf16, float32 for DeepSeek-V3's correction biases; a tied LM head is stored once.</summary>
    public static long ExportBytes(ReferenceTrainingModel model) =>
        model.NamedHuggingFaceTensors().Sum(nt => nt.Tensor.numel() * (ReferenceCheckpointExporter.ExportType(nt.Name) == ScalarType.Float32 ? 4 : 2));

    /// <summary>The log rows as CSV text (header <see cref="TrainingLogRow.CsvHeader"/>, '\n' line ends).</summary>
    public static string LossCsv(IEnumerable<TrainingLogRow> rows)
    {
        var text = new System.Text.StringBuilder(TrainingLogRow.CsvHeader).Append('\n');
        foreach (var row in rows) text.Append(row.ToCsv()).Append('\n');
        return text.ToString();
    }

    private static void EnsureOutputDirectoryUsable(string dir)
    {
        if (File.Exists(dir))
            throw new MoECompress.Formats.Errors.MoeCompressException(MoECompress.Formats.Errors.ErrorKind.Io, $"output '{dir}' is a file, not a folder");
        if (Directory.Exists(dir))
            throw new MoECompress.Formats.Errors.MoeCompressException(MoECompress.Formats.Errors.ErrorKind.Io, $"output folder '{dir}' already exists");
    }
}
