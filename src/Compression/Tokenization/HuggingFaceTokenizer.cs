using System.Text.Json;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Input;
using NativeTokenizer = Tokenizers.DotNet.Tokenizer;
using NativeTokenizerException = Tokenizers.DotNet.TokenizerException;

namespace MoECompress.Compression.Tokenization;

/// <summary>
/// A Hugging Face <c>tokenizer.json</c>, run by Hugging Face's own Rust tokenizers library (through Tokenizers.DotNet),
/// so ids are exactly those of transformers' fast tokenizers.
/// </summary>
/// <remarks>
/// <para>The native wrapper always applies the file's post-processor (for Llama-style files: a BOS token) and any
/// truncation or padding the file declares. To control special tokens explicitly, this class reads the
/// post-processor's template once, and when the file has one that adds tokens (or truncation/padding), loads a
/// temporary copy of the file with <c>post_processor</c>, <c>truncation</c> and <c>padding</c> set to null.
/// The template's tokens become <see cref="SpecialPrefix"/>/<see cref="SpecialSuffix"/> unless tokenizer_config.json's
/// add_bos_token/add_eos_token or <see cref="TokenizerOptions"/> say otherwise.</para>
/// <para>As in transformers, special tokens written in the text (for example <c>&lt;|im_end|&gt;</c>) are recognised
/// and encoded as their ids. Thread-safe: the native tokenizer is shared read-only.</para>
/// </remarks>
public sealed class HuggingFaceTokenizer : ITextTokenizer
{
    private readonly NativeTokenizer _native;
    private readonly int[] _prefix;
    private readonly int[] _suffix;
    private int _disposed;

    /// <inheritdoc/>
    public string Name { get; }
    /// <inheritdoc/>
    public int VocabSize { get; }
    /// <inheritdoc/>
    public int? BosId { get; }
    /// <inheritdoc/>
    public int? EosId { get; }
    /// <inheritdoc/>
    public IReadOnlyList<int> SpecialPrefix => _prefix;
    /// <inheritdoc/>
    public IReadOnlyList<int> SpecialSuffix => _suffix;
    /// <summary>The tokenizer.json this tokenizer was loaded from.</summary>
    public string FilePath { get; }
    /// <summary>The tokenizer model type declared in the file (BPE, Unigram, WordPiece, WordLevel).</summary>
    public string ModelType { get; }

    private HuggingFaceTokenizer(NativeTokenizer native, string path, string modelType, int vocabSize, int? bos, int? eos, int[] prefix, int[] suffix)
    {
        _native = native;
        FilePath = path;
        ModelType = modelType;
        VocabSize = vocabSize;
        BosId = bos;
        EosId = eos;
        _prefix = prefix;
        _suffix = suffix;
        Name = $"huggingface-tokenizers {modelType} ({path})";
    }

    /// <summary>Loads <paramref name="tokenizerJsonPath"/>; special-token settings come from <paramref name="config"/>
    /// (read from the same folder when null) and <paramref name="options"/>.</summary>
    /// <exception cref="MoeCompressException">The file is missing, not a tokenizer.json, or names special tokens it does not define (ErrorKind.InvalidConfig).</exception>
    public static HuggingFaceTokenizer Load(string tokenizerJsonPath, TokenizerConfigFile? config = null, TokenizerOptions? options = null)
    {
        var path = Path.GetFullPath(tokenizerJsonPath);
        if (!File.Exists(path)) throw new MoeCompressException(ErrorKind.InvalidConfig, $"{path}: tokenizer file not found");
        config ??= TokenizerConfigFile.Read(Path.GetDirectoryName(path)!);
        options ??= TokenizerOptions.Default;

        var doc = StrictJson.ReadDocumentFile(path, new StrictJsonOptions
        {
            Kind = ErrorKind.InvalidConfig, MaxDepth = 128, What = "tokenizer.json",
        });

        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.Object)
                throw new MoeCompressException(ErrorKind.InvalidConfig, $"{path}: not a Hugging Face tokenizer.json (no \"model\" object)");

            var modelType = model.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString()! : "BPE";
            var added = ReadAddedTokens(root, path);
            int vocabSize = Math.Max(ModelVocabSize(model, path), added.Count == 0 ? 0 : added.Values.Max() + 1);

            var (templatePrefix, templateSuffix, processorAddsTokens) = ReadTemplate(root, path, added, model);
            bool needsRewrite = processorAddsTokens || IsSet(root, "truncation") || IsSet(root, "padding");

            int? bos = ResolveToken(config.BosDeclared, config.BosToken, templatePrefix, added, model, "bos_token", config, path);
            int? eos = ResolveToken(config.EosDeclared, config.EosToken, templateSuffix, added, model, "eos_token", config, path);
            var (prefix, suffix) = SpecialTokenFraming.Resolve(bos, eos, templatePrefix, templateSuffix, config, options, path);

            var native = needsRewrite ? LoadWithoutPostProcessor(root, path) : LoadNative(path, path);
            return new HuggingFaceTokenizer(native, path, modelType, vocabSize, bos, eos, prefix, suffix);
        }
    }

    /// <inheritdoc/>
    public int[] Encode(string text, bool addSpecialTokens)
    {
        ArgumentNullException.ThrowIfNull(text);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        uint[] raw;
        try
        {
            raw = _native.Encode(SpecialTokenFraming.ReplaceLoneSurrogates(text));
        }
        catch (NativeTokenizerException e)
        {
            throw new MoeCompressException(ErrorKind.Internal, $"{FilePath}: Hugging Face tokenizers failed to encode a text of {text.Length} characters ({e.Message})", e);
        }
        var ids = System.Runtime.InteropServices.MemoryMarshal.Cast<uint, int>(raw.AsSpan());
        return addSpecialTokens ? SpecialTokenFraming.Frame(_prefix, ids, _suffix) : ids.ToArray();
    }

    /// <inheritdoc/>
    /// <remarks>Ids outside [0, VocabSize) are skipped (a model's padded embedding rows have no text).</remarks>
    public string Decode(IReadOnlyList<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        var raw = new List<uint>(ids.Count);
        foreach (var id in ids)
            if (id >= 0 && id < VocabSize) raw.Add((uint)id);
        if (raw.Count == 0) return string.Empty;
        try
        {
            return _native.Decode(raw.ToArray());
        }
        catch (NativeTokenizerException e)
        {
            throw new MoeCompressException(ErrorKind.Internal, $"{FilePath}: Hugging Face tokenizers failed to decode {ids.Count} ids ({e.Message})", e);
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _native.Dispose();
    }

    /// <inheritdoc/>
    public override string ToString() => Name;

    private static bool IsSet(JsonElement root, string key) =>
        root.TryGetProperty(key, out var v) && v.ValueKind != JsonValueKind.Null;

    private static Dictionary<string, int> ReadAddedTokens(JsonElement root, string path)
    {
        var added = new Dictionary<string, int>(StringComparer.Ordinal);
        if (!root.TryGetProperty("added_tokens", out var list) || list.ValueKind != JsonValueKind.Array) return added;
        foreach (var item in list.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Object ||
                !item.TryGetProperty("id", out var id) || !id.TryGetInt32(out var idValue) ||
                !item.TryGetProperty("content", out var content) || content.ValueKind != JsonValueKind.String)
                throw new MoeCompressException(ErrorKind.InvalidConfig, $"{path}: an entry of \"added_tokens\" lacks an integer \"id\" or a string \"content\"");
            added[content.GetString()!] = idValue;
        }
        return added;
    }

    private static int ModelVocabSize(JsonElement model, string path)
    {
        if (!model.TryGetProperty("vocab", out var vocab)) return 0;
        switch (vocab.ValueKind)
        {
            case JsonValueKind.Object: // BPE, WordPiece, WordLevel: token -> id
                int max = -1;
                foreach (var p in vocab.EnumerateObject())
                    if (p.Value.TryGetInt32(out var id) && id > max) max = id;
                return max + 1;
            case JsonValueKind.Array: // Unigram: [[piece, score], ...], id = index
                return vocab.GetArrayLength();
            default:
                throw new MoeCompressException(ErrorKind.InvalidConfig, $"{path}: \"model.vocab\" is neither an object nor an array");
        }
    }

    private static int? LookupToken(string token, Dictionary<string, int> added, JsonElement model)
    {
        if (added.TryGetValue(token, out var id)) return id;
        if (!model.TryGetProperty("vocab", out var vocab)) return null;
        if (vocab.ValueKind == JsonValueKind.Object)
            return vocab.TryGetProperty(token, out var v) && v.TryGetInt32(out var vid) ? vid : null;
        if (vocab.ValueKind == JsonValueKind.Array)
        {
            int i = 0;
            foreach (var entry in vocab.EnumerateArray())
            {
                if (entry.ValueKind == JsonValueKind.Array && entry.GetArrayLength() > 0 &&
                    entry[0].ValueKind == JsonValueKind.String && entry[0].GetString() == token) return i;
                i++;
            }
        }
        return null;
    }

    /// <summary>BOS/EOS: the token the config names; when the config never mentions it, the single token of the
    /// template's prefix (BOS) or suffix (EOS) if there is exactly one.</summary>
    private static int? ResolveToken(bool declared, string? token, IReadOnlyList<int> templateSide, Dictionary<string, int> added,
        JsonElement model, string key, TokenizerConfigFile config, string path)
    {
        if (declared)
        {
            if (token is null) return null;
            return LookupToken(token, added, model) ?? throw new MoeCompressException(ErrorKind.InvalidConfig,
                $"{string.Join(", ", config.Sources)}: {key} '{token}' is not in the vocabulary of {path}");
        }
        return templateSide.Count == 1 ? templateSide[0] : null;
    }

    /// <summary>Reads which ids the file's post-processor adds around a single sequence.</summary>
    private static (int[] Prefix, int[] Suffix, bool AddsTokens) ReadTemplate(JsonElement root, string path, Dictionary<string, int> added, JsonElement model)
    {
        if (!root.TryGetProperty("post_processor", out var pp) || pp.ValueKind == JsonValueKind.Null) return ([], [], false);
        var prefix = new List<int>();
        var suffix = new List<int>();
        bool adds = ReadProcessor(pp, path, added, model, prefix, suffix);
        return (prefix.ToArray(), suffix.ToArray(), adds);
    }

    private static bool ReadProcessor(JsonElement pp, string path, Dictionary<string, int> added, JsonElement model, List<int> prefix, List<int> suffix)
    {
        var type = pp.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;
        switch (type)
        {
            case "ByteLevel": // adjusts offsets only
                return false;
            case "Sequence":
                bool any = false;
                if (pp.TryGetProperty("processors", out var list) && list.ValueKind == JsonValueKind.Array)
                    foreach (var inner in list.EnumerateArray())
                        any |= ReadProcessor(inner, path, added, model, prefix, suffix);
                return any;
            case "TemplateProcessing":
                ReadTemplateProcessing(pp, path, prefix, suffix);
                return true;
            case "BertProcessing":
            case "RobertaProcessing":
                prefix.Add(PairId(pp, "cls", path));
                suffix.Add(PairId(pp, "sep", path));
                return true;
            default:
                throw new MoeCompressException(ErrorKind.InvalidConfig, $"{path}: unsupported post_processor type '{type}'");
        }
    }

    private static int PairId(JsonElement pp, string key, string path)
    {
        // "cls": ["<s>", 0]
        if (pp.TryGetProperty(key, out var pair) && pair.ValueKind == JsonValueKind.Array && pair.GetArrayLength() == 2 && pair[1].TryGetInt32(out var id))
            return id;
        throw new MoeCompressException(ErrorKind.InvalidConfig, $"{path}: post_processor \"{key}\" is not a [token, id] pair");
    }

    private static void ReadTemplateProcessing(JsonElement pp, string path, List<int> prefix, List<int> suffix)
    {
        if (!pp.TryGetProperty("single", out var single) || single.ValueKind != JsonValueKind.Array)
            throw new MoeCompressException(ErrorKind.InvalidConfig, $"{path}: TemplateProcessing post_processor has no \"single\" template");
        pp.TryGetProperty("special_tokens", out var specials);
        bool seenSequence = false;
        foreach (var piece in single.EnumerateArray())
        {
            if (piece.TryGetProperty("Sequence", out _)) { seenSequence = true; continue; }
            if (!piece.TryGetProperty("SpecialToken", out var st) || !st.TryGetProperty("id", out var nameEl) || nameEl.ValueKind != JsonValueKind.String)
                throw new MoeCompressException(ErrorKind.InvalidConfig, $"{path}: TemplateProcessing \"single\" has an entry that is neither Sequence nor SpecialToken");
            var name = nameEl.GetString()!;
            if (specials.ValueKind != JsonValueKind.Object || !specials.TryGetProperty(name, out var spec) ||
                !spec.TryGetProperty("ids", out var ids) || ids.ValueKind != JsonValueKind.Array)
                throw new MoeCompressException(ErrorKind.InvalidConfig, $"{path}: TemplateProcessing names special token '{name}' without its ids");
            foreach (var id in ids.EnumerateArray())
            {
                if (!id.TryGetInt32(out int value))
                    throw new MoeCompressException(ErrorKind.InvalidConfig, $"{path}: TemplateProcessing special token '{name}' has an id that is not a 32-bit integer ({id.GetRawText()})");
                (seenSequence ? suffix : prefix).Add(value);
            }
        }
    }

    /// <summary>Writes a copy of the file without post_processor/truncation/padding to a temporary file, loads it, deletes it.</summary>
    private static NativeTokenizer LoadWithoutPostProcessor(JsonElement root, string path)
    {
        var temp = Path.Combine(Path.GetTempPath(), $"moe-compress-tokenizer-{Guid.NewGuid():N}.json");
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write))
            using (var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
            {
                writer.WriteStartObject();
                foreach (var property in root.EnumerateObject())
                {
                    if (property.NameEquals("post_processor") || property.NameEquals("truncation") || property.NameEquals("padding"))
                        writer.WriteNull(property.Name);
                    else
                        property.WriteTo(writer);
                }
                writer.WriteEndObject();
            }
            return LoadNative(temp, path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new MoeCompressException(ErrorKind.Io, $"{temp}: could not write a temporary copy of {path} ({e.Message})", e);
        }
        finally
        {
            try { File.Delete(temp); } catch (Exception e) when (e is IOException or UnauthorizedAccessException) { /* best effort */ }
        }
    }

    private static NativeTokenizer LoadNative(string file, string reportedPath)
    {
        try
        {
            return new NativeTokenizer(file);
        }
        catch (NativeTokenizerException e)
        {
            throw new MoeCompressException(ErrorKind.InvalidConfig, $"{reportedPath}: Hugging Face tokenizers cannot load it ({e.Message})", e);
        }
        catch (DllNotFoundException e)
        {
            throw new MoeCompressException(ErrorKind.Internal,
                $"the native Hugging Face tokenizers library (libhf_tokenizers, package Tokenizers.DotNet.runtime.*) could not be loaded for {reportedPath} ({e.Message})", e);
        }
    }
}
