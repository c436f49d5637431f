using MoECompress.Formats.Errors;

namespace MoECompress.Compression.Tokenization;

/// <summary>
/// Decides which special tokens <c>Encode(text, addSpecialTokens: true)</c> puts around the text, the way
/// transformers does: explicit options first, then tokenizer_config.json's add_bos_token / add_eos_token,
/// then the tokenizer's own default template (tokenizer.json's post_processor, or SentencePiece's Llama default).
/// </summary>
internal static class SpecialTokenFraming
{
    public static (int[] Prefix, int[] Suffix) Resolve(
        int? bosId, int? eosId, IReadOnlyList<int> templatePrefix, IReadOnlyList<int> templateSuffix,
        TokenizerConfigFile config, TokenizerOptions options, string where)
    {
        var prefix = Side(options.AddBos, config.AddBosToken, bosId, templatePrefix, "BOS", "add_bos_token", where);
        var suffix = Side(options.AddEos, config.AddEosToken, eosId, templateSuffix, "EOS", "add_eos_token", where);
        return (prefix, suffix);
    }

    private static int[] Side(bool? option, bool? configured, int? id, IReadOnlyList<int> template, string what, string key, string where)
    {
        var want = option ?? configured;
        if (want is null) return template.ToArray();
        if (!want.Value) return [];
        if (id is null)
        {
            throw option is not null
                ? new MoeCompressException(ErrorKind.Usage, $"{where}: adding a {what} token was requested but the tokenizer defines none")
                : new MoeCompressException(ErrorKind.InvalidConfig, $"{where}: {key} is true but the tokenizer defines no {what} token");
        }
        return [id.Value];
    }

    /// <summary>prefix + body + suffix as one new array.</summary>
    public static int[] Frame(ReadOnlySpan<int> prefix, ReadOnlySpan<int> body, ReadOnlySpan<int> suffix)
    {
        var result = new int[prefix.Length + body.Length + suffix.Length];
        prefix.CopyTo(result);
        body.CopyTo(result.AsSpan(prefix.Length));
        suffix.CopyTo(result.AsSpan(prefix.Length + body.Length));
        return result;
    }

    /// <summary>Replaces unpaired UTF-16 surrogates by U+FFFD, as a UTF-8 encoder would; returns the input when it has none.</summary>
    public static string ReplaceLoneSurrogates(string text)
    {
        int i = 0;
        for (; i < text.Length; i++)
        {
            char c = text[i];
            if (!char.IsSurrogate(c)) continue;
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1])) { i++; continue; }
            break;
        }
        if (i >= text.Length) return text;
        var chars = text.ToCharArray();
        for (int j = i; j < chars.Length; j++)
        {
            char c = chars[j];
            if (!char.IsSurrogate(c)) continue;
            if (char.IsHighSurrogate(c) && j + 1 < chars.Length && char.IsLowSurrogate(chars[j + 1])) { j++; continue; }
            chars[j] = '\uFFFD';
        }
        return new string(chars);
    }
}
