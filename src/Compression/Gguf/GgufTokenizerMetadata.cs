using System.Text.Json.Nodes;
using MoECompress.Compression.Tokenization;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Gguf;

namespace MoECompress.Compression.Gguf;

/// <summary>
/// The <c>tokenizer.ggml.*</c> keys of a model folder, as llama.cpp's converter writes them: a SentencePiece
/// <c>tokenizer.model</c> becomes model <c>llama</c> (pieces, scores, token types 1–6 as SentencePiece numbers them);
/// a BPE <c>tokenizer.json</c> becomes model <c>gpt2</c> (vocabulary in id order, merges, added special tokens as
/// CONTROL, a <c>pre</c> name chosen by family). The vocabulary is padded to the embedding's rows with
/// <c>[PAD{id}]</c> (UNUSED) as the converter does. Special ids come from config.json; chat_template from
/// tokenizer_config.json when present.
/// </summary>
public static class GgufTokenizerMetadata
{
    private const int Normal = 1, Control = 3, UserDefined = 4, Unused = 5;

    public static List<KeyValuePair<string, GgufValue>> Read(string modelDir, JsonObject config, string family, long vocabRows)
    {
        var kv = new List<KeyValuePair<string, GgufValue>>();
        var spm = Path.Combine(modelDir, "tokenizer.model");
        var hf = Path.Combine(modelDir, "tokenizer.json");
        List<string> tokens;
        List<int> types;
        if (File.Exists(spm))
        {
            var model = SentencePieceModelFile.Read(spm);
            tokens = model.Pieces.Select(p => p.Piece).ToList();
            types = model.Pieces.Select(p => (int)p.Type).ToList();
            var scores = model.Pieces.Select(p => p.Score).ToList();
            while (scores.Count < vocabRows) scores.Add(-1000f);
            kv.Add(new("tokenizer.ggml.model", GgufValue.Str("llama")));
            Pad(tokens, types, vocabRows);
            kv.Add(new("tokenizer.ggml.tokens", GgufValue.Strings(tokens.ToArray())));
            kv.Add(new("tokenizer.ggml.scores", GgufValue.F32s(scores.ToArray())));
            kv.Add(new("tokenizer.ggml.token_type", GgufValue.I32s(types.ToArray())));
            if (model.UnkId >= 0) kv.Add(new("tokenizer.ggml.unknown_token_id", GgufValue.U32((uint)model.UnkId)));
        }
        else if (File.Exists(hf))
        {
            var root = JsonNode.Parse(File.ReadAllText(hf)) as JsonObject
                       ?? throw new MoeCompressException(ErrorKind.InvalidConfig, $"{hf}: not a JSON object");
            var model = root["model"] as JsonObject;
            if (model?["type"]?.GetValue<string>() != "BPE" || model["vocab"] is not JsonObject vocab)
                throw new MoeCompressException(ErrorKind.InvalidConfig, $"{hf}: GGUF export writes BPE tokenizers (model.type 'BPE' with a vocab), not '{model?["type"]}'");
            var byId = new SortedDictionary<int, string>();
            foreach (var (piece, id) in vocab) byId[id!.GetValue<int>()] = piece;
            var special = new HashSet<int>();
            var added = new HashSet<int>();
            foreach (var a in root["added_tokens"] as JsonArray ?? [])
            {
                var id = a!["id"]!.GetValue<int>();
                byId[id] = a["content"]!.GetValue<string>();
                added.Add(id);
                if (a["special"]?.GetValue<bool>() == true) special.Add(id);
            }
            var count = Math.Max(byId.Count == 0 ? 0 : byId.Keys.Max() + 1, 0);
            tokens = new List<string>(count);
            types = new List<int>(count);
            for (var i = 0; i < count; i++)
            {
                tokens.Add(byId.TryGetValue(i, out var t) ? t : $"[PAD{i}]");
                types.Add(!byId.ContainsKey(i) ? Unused : special.Contains(i) ? Control : added.Contains(i) ? UserDefined : Normal);
            }
            Pad(tokens, types, vocabRows);
            var merges = (model["merges"] as JsonArray ?? []).Select(m => m is JsonArray pair ? $"{pair[0]} {pair[1]}" : m!.GetValue<string>()).ToArray();
            kv.Add(new("tokenizer.ggml.model", GgufValue.Str("gpt2")));
            kv.Add(new("tokenizer.ggml.pre", GgufValue.Str(family switch
            {
                "qwen2-moe" or "qwen3-moe" => "qwen2",
                "deepseek-v3" => "deepseek-v3",
                "deepseek-v2" => "deepseek-llm",
                "olmoe" => "olmo",
                _ => "default",
            })));
            kv.Add(new("tokenizer.ggml.tokens", GgufValue.Strings(tokens.ToArray())));
            kv.Add(new("tokenizer.ggml.token_type", GgufValue.I32s(types.ToArray())));
            kv.Add(new("tokenizer.ggml.merges", GgufValue.Strings(merges)));
        }
        else
        {
            throw new MoeCompressException(ErrorKind.InvalidConfig,
                $"{modelDir}: no tokenizer.model or tokenizer.json; llama.cpp needs the vocabulary inside the GGUF file");
        }
        void Id(string key, string configKey)
        {
            if (config[configKey] is JsonValue v && v.TryGetValue<int>(out var id) && id >= 0) kv.Add(new($"tokenizer.ggml.{key}", GgufValue.U32((uint)id)));
        }
        Id("bos_token_id", "bos_token_id");
        Id("eos_token_id", "eos_token_id");
        Id("padding_token_id", "pad_token_id");
        var tokenizerConfig = Path.Combine(modelDir, "tokenizer_config.json");
        var tc = File.Exists(tokenizerConfig) ? JsonNode.Parse(File.ReadAllText(tokenizerConfig)) as JsonObject : null;
        kv.Add(new("tokenizer.ggml.add_bos_token", GgufValue.Bool(tc?["add_bos_token"] is JsonValue ab ? ab.GetValue<bool>() : File.Exists(spm))));
        kv.Add(new("tokenizer.ggml.add_eos_token", GgufValue.Bool(tc?["add_eos_token"] is JsonValue ae && ae.GetValue<bool>())));
        if (tc?["chat_template"] is JsonValue ct && ct.TryGetValue<string>(out var template)) kv.Add(new("tokenizer.chat_template", GgufValue.Str(template)));
        return kv;
    }

    private static void Pad(List<string> tokens, List<int> types, long rows)
    {
        for (var i = tokens.Count; i < rows; i++)
        {
            tokens.Add($"[PAD{i}]");
            types.Add(Unused);
        }
    }
}
