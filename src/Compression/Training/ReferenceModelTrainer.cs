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
    /// </summary>
    public static ReferenceTrainingResult Train(ReferenceModelOptions options, IProgress<ReferenceTrainingProgress>? progress = null,
        CancellationToken ct = default)
    {
        options.Validate();
        EnsureOutputDirectoryUsable(options.OutputDirectory);
        var encoder = new SentencePieceEncoder(options.TokenizerModelPath);
        var corpus = LoadCorpus(options, encoder, progress, ct);
        using var trained = TrainModel(options, corpus, encoder.VocabularySize, progress, ct);
        if (options.TrainingStatePath is not null)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(options.TrainingStatePath))!);
            trained.Model.save(options.TrainingStatePath);
            File.WriteAllText(options.TrainingStatePath + ".loss.csv", LossCsv(trained.Log));
        }
        progress?.Report(new ReferenceTrainingProgress($"writing the checkpoint to {options.OutputDirectory}"));
        MixtralCheckpointExporter.Export(trained.Model, encoder, options.TokenizerModelPath, options.OutputDirectory,
            new Dictionary<string, string> { ["training-loss.csv"] = LossCsv(trained.Log) },
            manifestOptions: new System.Text.Json.Nodes.JsonObject { ["train_reference"] = System.Text.Json.JsonSerializer.SerializeToNode(options) },
            ct: ct);
        var last = trained.Log.Count > 0 ? trained.Log[^1] : null;
        return new ReferenceTrainingResult(options.OutputDirectory, trained.TokensSeen, options.Steps,
            last?.CrossEntropy ?? double.NaN, trained.Log, corpus.Domains.Select(d => (d.Domain, (long)d.Tokens.Length)).ToList());
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
        return new TrainingCorpus(streams, options.SequenceLength, options.Seed);
    }

    /// <summary>Runs the optimisation loop for <see cref="ReferenceModelOptions.Steps"/> steps and returns the trained model.</summary>
    public static TrainedReferenceModel TrainModel(ReferenceModelOptions options, TrainingCorpus corpus, long vocabularySize,
        IProgress<ReferenceTrainingProgress>? progress = null, CancellationToken ct = default)
    {
        if (options.Threads <= 0) return RunTraining(options, corpus, vocabularySize, progress, ct);
        // The thread count is put back afterwards: libtorch keeps it per calling thread (OpenMP), and a later run on
        // this thread at another count would sum in another order — same input, different last digits.
        int previous = torch.get_num_threads();
        torch.set_num_threads(options.Threads);
        try
        {
            return RunTraining(options, corpus, vocabularySize, progress, ct);
        }
        finally
        {
            torch.set_num_threads(previous);
        }
    }

    private static TrainedReferenceModel RunTraining(ReferenceModelOptions options, TrainingCorpus corpus, long vocabularySize,
        IProgress<ReferenceTrainingProgress>? progress, CancellationToken ct)
    {
        var model = new MixtralTrainingModel(options, vocabularySize, options.Seed);
        try
        {
            model.train();
            var (decay, _) = model.ParameterGroups();
            var all = model.parameters().ToList();
            // Decoupled weight decay is applied by hand to matrices only (p ← p·(1 − lr·wd), as torch AdamW does),
            // so the optimiser itself runs with weight_decay 0.
            var optimizer = torch.optim.AdamW(all, lr: options.LearningRate, beta1: options.Beta1, beta2: options.Beta2,
                eps: 1e-8, weight_decay: 0.0);
            var schedule = new CosineLearningRateSchedule(options.LearningRate, options.MinLearningRate, options.WarmupSteps, options.Steps);
            int b = options.BatchSize, t = options.SequenceLength;
            long tokensPerStep = (long)b * t;
            var log = new List<TrainingLogRow>();
            double sumCe = 0, sumAux = 0, sumZ = 0;
            int stepsInRow = 0;
            var clock = Stopwatch.StartNew();
            double rowStart = 0;
            progress?.Report(new ReferenceTrainingProgress(
                $"training {CountParameters(model):N0} parameters on {corpus.WindowCount:N0} windows ({corpus.TokenCount:N0} tokens) for {options.Steps} steps",
                null, options.Steps));

            for (int step = 0; step < options.Steps; step++)
            {
                ct.ThrowIfCancellationRequested();
                using var scope = torch.NewDisposeScope();
                double lr = schedule.At(step);
                var ids = torch.tensor(corpus.Batch(step, b), [b, t + 1], ScalarType.Int64);
                var input = ids.narrow(1, 0, t);
                var target = ids.narrow(1, 1, t).reshape(-1);
                var forward = model.Forward(input);
                var ce = nn.functional.cross_entropy(forward.Logits.view(-1, forward.Logits.shape[^1]), target);
                var aux = torch.stack(forward.Routers.Select(r => LoadBalancingLoss.Compute(r.RouterProbabilities, r.SelectedExperts)).ToArray()).mean();
                var z = torch.stack(forward.Routers.Select(r => LoadBalancingLoss.RouterZLoss(r.RouterLogits)).ToArray()).mean();
                var loss = ce + aux.Times(options.AuxLossCoefficient);
                if (options.RouterZLossCoefficient > 0) loss = loss + z.Times(options.RouterZLossCoefficient);

                optimizer.zero_grad();
                loss.backward();
                if (options.GradientClipNorm > 0) nn.utils.clip_grad_norm_(all, options.GradientClipNorm);
                foreach (var group in optimizer.ParamGroups) group.LearningRate = lr;
                if (options.WeightDecay > 0)
                    using (torch.no_grad())
                        foreach (var p in decay) p.Times_(1.0 - lr * options.WeightDecay);
                optimizer.step();

                sumCe += ce.item<float>();
                sumAux += aux.item<float>();
                sumZ += z.item<float>();
                stepsInRow++;
                if ((step + 1) % options.LogEvery == 0 || step + 1 == options.Steps)
                {
                    double now = clock.Elapsed.TotalSeconds;
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

    public static long CountParameters(MixtralTrainingModel model) => model.parameters().Sum(p => p.numel());

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
