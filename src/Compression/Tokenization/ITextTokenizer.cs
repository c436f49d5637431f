namespace MoECompress.Compression.Tokenization;

/// <summary>
/// A model's tokenizer: text to token ids and back. Obtain one with <see cref="TokenizerLoader.Load"/>.
/// </summary>
/// <remarks>
/// <para>All implementations are safe to use from several threads at once (Encode and Decode); only
/// <see cref="IDisposable.Dispose"/> must not race with other calls.</para>
/// <para>Special tokens are handled explicitly and the same way for every implementation:
/// <c>Encode(text, addSpecialTokens: false)</c> returns only the ids of the text itself;
/// <c>Encode(text, addSpecialTokens: true)</c> returns <see cref="SpecialPrefix"/> + those ids + <see cref="SpecialSuffix"/>,
/// which follow tokenizer_config.json's <c>add_bos_token</c> / <c>add_eos_token</c> as transformers does
/// (or the tokenizer's own template when those keys are absent), unless <see cref="TokenizerOptions"/> overrides them.</para>
/// </remarks>
public interface ITextTokenizer : IDisposable
{
    /// <summary>What this tokenizer is, for reports: the implementation and the file it was loaded from.</summary>
    string Name { get; }

    /// <summary>Number of ids the tokenizer can produce (largest id + 1, added tokens included). A model's embedding
    /// table may be larger (padded); it is never smaller.</summary>
    int VocabSize { get; }

    /// <summary>Beginning-of-sequence token id, or null when the tokenizer has none (Qwen, for example).</summary>
    int? BosId { get; }

    /// <summary>End-of-sequence token id, or null when the tokenizer has none.</summary>
    int? EosId { get; }

    /// <summary>Ids that <c>Encode(text, true)</c> puts before the text (usually [BOS] or nothing).</summary>
    IReadOnlyList<int> SpecialPrefix { get; }

    /// <summary>Ids that <c>Encode(text, true)</c> puts after the text (usually nothing, or [EOS]).</summary>
    IReadOnlyList<int> SpecialSuffix { get; }

    /// <summary>Token ids of <paramref name="text"/>; with <paramref name="addSpecialTokens"/>, framed by
    /// <see cref="SpecialPrefix"/> and <see cref="SpecialSuffix"/>.</summary>
    int[] Encode(string text, bool addSpecialTokens);

    /// <summary>The text of <paramref name="ids"/>. Special tokens (BOS, EOS, unknown, other control tokens) are
    /// left out, as transformers' <c>decode(ids, skip_special_tokens=True)</c> does.</summary>
    string Decode(IReadOnlyList<int> ids);
}
