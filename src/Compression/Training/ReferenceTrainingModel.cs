using System.Text.Json.Nodes;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MoECompress.Compression.Training;

/// <summary>
/// What the trainer, the exporter and the evaluator need of a trainable reference model, whatever its
/// <see cref="ReferenceModelOptions.Layout"/>: the forward pass with its router outputs, the layout's balancing
/// (a loss term, and for DeepSeek-V3 a bias update after each optimiser step), the Hugging Face tensor names and
/// config.json. Non-parameter state that training changes (DeepSeek-V3's e_score_correction_bias) is held in module
/// buffers, which resumable checkpoints save beside the parameters.
/// </summary>
public abstract class ReferenceTrainingModel : nn.Module
{
    protected ReferenceTrainingModel(ReferenceModelOptions options, long vocabularySize) : base("model")
    {
        Options = options;
        VocabularySize = vocabularySize;
    }

    public ReferenceModelOptions Options { get; }

    /// <summary>Vocabulary size (rows of the embedding and the LM head).</summary>
    public long VocabularySize { get; }

    /// <summary>A freshly initialised model of <paramref name="options"/>' layout.</summary>
    public static ReferenceTrainingModel Create(ReferenceModelOptions options, long vocabularySize, long seed) => options.Layout switch
    {
        ReferenceModelLayout.Mixtral => new MixtralTrainingModel(options, vocabularySize, seed),
        ReferenceModelLayout.DeepseekV3 => new DeepseekV3TrainingModel(options, vocabularySize, seed),
        _ => throw new ArgumentOutOfRangeException(nameof(options), options.Layout, "unknown layout"),
    };

    /// <summary>Forward pass over token ids [B, T] (int64).</summary>
    public abstract TrainingForwardResult Forward(Tensor inputIds);

    /// <summary>Every exported tensor under its Hugging Face name and shape (views/copies owned by the caller's scope).</summary>
    public abstract IEnumerable<(string Name, Tensor Tensor)> NamedHuggingFaceTensors();

    /// <summary>The Hugging Face config.json of the model.</summary>
    public abstract JsonObject HuggingFaceConfig(int bosId, int eosId);

    /// <summary>The layout's load-balancing loss of a forward pass (a scalar tensor, logged as such).</summary>
    public abstract Tensor BalanceLoss(TrainingForwardResult forward);

    /// <summary>The coefficient of <see cref="BalanceLoss"/> in the training loss.</summary>
    public abstract double BalanceLossCoefficient { get; }

    /// <summary>Layers with a router (rows of <see cref="TrainingForwardResult.Routers"/>): all but DeepSeek-V3's dense ones.</summary>
    public int MoELayers => Options.Layout == ReferenceModelLayout.DeepseekV3 ? Options.Layers - Options.FirstDenseLayers : Options.Layers;

    /// <summary>Called after each optimiser step (no gradients) with that step's forward pass; nothing by default.</summary>
    public virtual void AfterOptimizerStep(TrainingForwardResult forward) { }

    /// <summary>Parameters that receive weight decay (matrices) and those that do not (norm scales).</summary>
    public (List<Parameter> Decay, List<Parameter> NoDecay) ParameterGroups()
    {
        var decay = new List<Parameter>();
        var noDecay = new List<Parameter>();
        foreach (var p in parameters())
            (p.dim() >= 2 ? decay : noDecay).Add(p);
        return (decay, noDecay);
    }

    /// <summary>
    /// The forward pass shared by the layouts: embedding lookup of <paramref name="inputIds"/> [B, T], the decoder layers
    /// (<paramref name="decoder"/>: hidden state in, hidden state out, adding each MoE layer's router output to the list),
    /// the final norm and the LM head (<paramref name="lmHead"/>, or the embedding when tied).
    /// </summary>
    protected TrainingForwardResult Forward(Tensor inputIds, Parameter embedTokens, TrainingRmsNorm norm, Parameter? lmHead,
        Func<Tensor, List<SparseMoeBlockOutput>, Tensor> decoder)
    {
        using var scope = NewDisposeScope();
        var x = embedTokens.index_select(0, inputIds.flatten()).view(inputIds.shape[0], inputIds.shape[1], -1);
        var routers = new List<SparseMoeBlockOutput>();
        x = decoder(x, routers);
        x = norm.forward(x);
        var logits = TrainingLinear.Apply(x, lmHead ?? embedTokens, Options.Bf16Matmuls);
        foreach (var r in routers)
        {
            r.RouterLogits.MoveToOuterDisposeScope();
            r.RouterProbabilities.MoveToOuterDisposeScope();
            r.SelectedExperts.MoveToOuterDisposeScope();
        }
        return new TrainingForwardResult(logits.MoveToOuterDisposeScope(), routers);
    }

    /// <summary>
    /// The parts shared by the layouts, initialised in this order from <paramref name="seed"/>'s generator: the embedding,
    /// the decoder layers (<paramref name="layer"/>(index, init, initOutput) for each), the final norm and, untied, the LM head.
    /// </summary>
    protected (Parameter Embedding, ModuleList<TLayer> Layers, TrainingRmsNorm Norm, Parameter? LmHead) BuildModel<TLayer>(long seed,
        Func<int, Func<long[], Tensor>, Func<long[], Tensor>, TLayer> layer) where TLayer : nn.Module
    {
        var (init, initOutput) = Initialisers(Options, seed);
        // No dispose scope here: the parameters wrap these tensors and must outlive construction.
        var embedding = new Parameter(init([VocabularySize, Options.HiddenSize]));
        var layers = new ModuleList<TLayer>(Enumerable.Range(0, Options.Layers).Select(l => layer(l, init, initOutput)).ToArray());
        var norm = new TrainingRmsNorm("norm", Options.HiddenSize, Options.RmsNormEps);
        var lmHead = Options.TieWordEmbeddings ? null : new Parameter(init([VocabularySize, Options.HiddenSize]));
        return (embedding, layers, norm, lmHead);
    }

    /// <summary>
    /// The initialisers of a model seeded with <paramref name="seed"/>: N(0, initializer_range²), and for output
    /// projections N(0, (initializer_range/√(2·layers))²), drawn in call order from one generator.
    /// </summary>
    private static (Func<long[], Tensor> Init, Func<long[], Tensor> InitOutput) Initialisers(ReferenceModelOptions options, long seed)
    {
        var generator = new Generator((ulong)seed);
        double std = options.InitializerRange;
        double outStd = std / Math.Sqrt(2.0 * options.Layers);
        return (shape => torch.randn(shape, dtype: ScalarType.Float32, generator: generator).Times_(std),
            shape => torch.randn(shape, dtype: ScalarType.Float32, generator: generator).Times_(outStd));
    }
}
