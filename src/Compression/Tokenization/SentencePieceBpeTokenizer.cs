using System.Text;
using MoECompress.Formats.Errors;

namespace MoECompress.Compression.Tokenization;

/// <summary>
/// A SentencePiece BPE model (<c>tokenizer.model</c> of Llama, Mistral, Mixtral and similar), encoded with the
/// algorithm of sentencepiece's bpe_model.cc: the text is split into characters, and the adjacent pair whose merged
/// piece has the highest score is merged first, the leftmost pair on equal scores, until no pair is in the
/// vocabulary; pieces missing from the vocabulary fall back to &lt;0xNN&gt; byte pieces.
/// </summary>
/// <remarks>
/// <para>Written here rather than taken from Microsoft.ML.Tokenizers 2.0.1, whose SentencePiece BPE breaks equal-score
/// ties at the rightmost pair and so differs from sentencepiece on runs such as <c>":///"</c>, <c>"}}}$,"</c> or
/// <c>",,,."</c> (measured: the two agree with each other on short strings and part ways within the first thousand
/// tokens of real text). Supports the identity normalizer only (no precompiled character map), which is what these
/// models use; <see cref="TokenizerLoader"/> hands other SentencePiece models to <see cref="SentencePieceLibraryTokenizer"/>.</para>
/// <para>Special tokens written in the text (such as "&lt;s&gt;") are encoded as plain text, as sentencepiece does.
/// Thread-safe: all tables are read-only after construction.</para>
/// </remarks>
public sealed class SentencePieceBpeTokenizer : ITextTokenizer
{
    private const char SpaceSymbol = '\u2581';

    private readonly SentencePieceEntry[] _pieces;
    private readonly Dictionary<string, (int Id, float Score, bool Unused)>.AlternateLookup<ReadOnlySpan<char>> _mergeable;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _pieceIds;
    private readonly int[] _byteIds; // byte value -> id of <0xNN>, or -1
    private readonly string[] _userDefined; // longest first
    private readonly HashSet<uint> _innerBigrams; // UTF-16 code-unit pairs that occur inside some mergeable piece
    private readonly bool _byteFallback, _addDummyPrefix, _removeExtraWhitespaces, _escapeWhitespaces, _whitespaceAsSuffix;
    private readonly int _unkId;
    private readonly int[] _prefix;
    private readonly int[] _suffix;

    /// <inheritdoc/>
    public string Name { get; }
    /// <inheritdoc/>
    public int VocabSize => _pieces.Length;
    /// <inheritdoc/>
    public int? BosId { get; }
    /// <inheritdoc/>
    public int? EosId { get; }
    /// <inheritdoc/>
    public IReadOnlyList<int> SpecialPrefix => _prefix;
    /// <inheritdoc/>
    public IReadOnlyList<int> SpecialSuffix => _suffix;
    /// <summary>The model file this tokenizer was loaded from.</summary>
    public string FilePath { get; }

    private SentencePieceBpeTokenizer(SentencePieceModelFile model, int? bos, int? eos, int[] prefix, int[] suffix)
    {
        FilePath = model.FilePath;
        Name = $"sentencepiece-bpe ({model.FilePath})";
        _pieces = model.Pieces.ToArray();
        _byteFallback = model.ByteFallback;
        _addDummyPrefix = model.AddDummyPrefix;
        _removeExtraWhitespaces = model.RemoveExtraWhitespaces;
        _escapeWhitespaces = model.EscapeWhitespaces;
        _whitespaceAsSuffix = model.TreatWhitespaceAsSuffix;
        _unkId = model.UnkId;
        BosId = bos;
        EosId = eos;
        _prefix = prefix;
        _suffix = suffix;

        var mergeable = new Dictionary<string, (int, float, bool)>(StringComparer.Ordinal);
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        var user = new List<string>();
        _byteIds = new int[256];
        Array.Fill(_byteIds, -1);
        for (int i = 0; i < _pieces.Length; i++)
        {
            var p = _pieces[i];
            ids.TryAdd(p.Piece, i);
            // sentencepiece merges only into normal, user-defined and unused pieces (its pieces_ map).
            if (p.Type is SentencePieceType.Normal or SentencePieceType.UserDefined or SentencePieceType.Unused)
                mergeable.TryAdd(p.Piece, (i, p.Score, p.Type == SentencePieceType.Unused));
            if (p.Type == SentencePieceType.UserDefined && p.Piece.Length > 0) user.Add(p.Piece);
            if (p.Type == SentencePieceType.Byte && p.Piece.Length == 6 && p.Piece.StartsWith("<0x", StringComparison.Ordinal) &&
                byte.TryParse(p.Piece.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, null, out var b))
                _byteIds[b] = i;
        }
        _mergeable = mergeable.GetAlternateLookup<ReadOnlySpan<char>>();
        _pieceIds = ids.GetAlternateLookup<ReadOnlySpan<char>>();
        _userDefined = user.OrderByDescending(s => s.Length).ToArray();
        _innerBigrams = new HashSet<uint>();
        foreach (var piece in mergeable.Keys)
            for (int i = 1; i < piece.Length; i++)
                _innerBigrams.Add(((uint)piece[i - 1] << 16) | piece[i]);
    }

    /// <summary>Loads a SentencePiece BPE model. BOS/EOS come from tokenizer_config.json when it names them, else from
    /// the model's trainer spec; <c>Encode(text, true)</c> prepends BOS by default (transformers' LlamaTokenizer default).</summary>
    /// <exception cref="MoeCompressException">Not a BPE model with the identity normalizer, or inconsistent special tokens (ErrorKind.InvalidConfig).</exception>
    public static SentencePieceBpeTokenizer Load(string modelPath, TokenizerConfigFile? config = null, TokenizerOptions? options = null)
    {
        var path = Path.GetFullPath(modelPath);
        var model = SentencePieceModelFile.Read(path);
        if (!IsSupported(model))
            throw new MoeCompressException(ErrorKind.InvalidConfig,
                $"{path}: SentencePiece model type {model.ModelType} with normalizer '{model.NormalizerName}' is not a plain BPE model (use SentencePieceLibraryTokenizer)");
        config ??= TokenizerConfigFile.Read(Path.GetDirectoryName(path)!);
        options ??= TokenizerOptions.Default;
        var (bos, eos) = ResolveBosEos(model, config);
        var (prefix, suffix) = SpecialTokenFraming.Resolve(bos, eos, bos is null ? [] : [bos.Value], [], config, options, path);
        return new SentencePieceBpeTokenizer(model, bos, eos, prefix, suffix);
    }

    /// <summary>True for BPE models (model_type 2) without a precompiled character map: the models this class encodes exactly.</summary>
    public static bool IsSupported(SentencePieceModelFile model) => model.ModelType == 2 && model.PrecompiledCharsMapLength == 0;

    internal static (int? Bos, int? Eos) ResolveBosEos(SentencePieceModelFile model, TokenizerConfigFile config)
    {
        int? Find(bool declared, string? token, int trainerId, string key)
        {
            if (declared)
            {
                if (token is null) return null;
                for (int i = 0; i < model.Pieces.Count; i++)
                    if (model.Pieces[i].Piece == token) return i;
                throw new MoeCompressException(ErrorKind.InvalidConfig,
                    $"{string.Join(", ", config.Sources)}: {key} '{token}' is not in the vocabulary of {model.FilePath}");
            }
            return trainerId >= 0 && trainerId < model.Pieces.Count ? trainerId : null;
        }
        return (Find(config.BosDeclared, config.BosToken, model.BosId, "bos_token"),
                Find(config.EosDeclared, config.EosToken, model.EosId, "eos_token"));
    }

    /// <inheritdoc/>
    public int[] Encode(string text, bool addSpecialTokens)
    {
        ArgumentNullException.ThrowIfNull(text);
        var output = new List<int>(text.Length / 3 + 8);
        if (addSpecialTokens) output.AddRange(_prefix);
        var normalized = Normalize(SpecialTokenFraming.ReplaceLoneSurrogates(text));
        if (normalized.Length > 0) EncodeInChunks(normalized, output);
        if (addSpecialTokens) output.AddRange(_suffix);
        return output.ToArray();
    }

    /// <summary>sentencepiece's identity normalizer: optional removal of extra spaces, the dummy prefix, spaces as U+2581.</summary>
    private string Normalize(string text)
    {
        if (_removeExtraWhitespaces)
        {
            var sb = new StringBuilder(text.Length);
            bool pendingSpace = false;
            foreach (var c in text)
            {
                if (c == ' ') { pendingSpace = sb.Length > 0; continue; }
                if (pendingSpace) { sb.Append(' '); pendingSpace = false; }
                sb.Append(c);
            }
            text = sb.ToString();
        }
        if (text.Length == 0) return text;
        if (_escapeWhitespaces) text = text.Replace(' ', SpaceSymbol);
        if (_addDummyPrefix)
        {
            var space = _escapeWhitespaces ? SpaceSymbol : ' ';
            text = _whitespaceAsSuffix ? text + space : space + text;
        }
        return text;
    }

    private struct Symbol
    {
        public int Start, Length, Prev, Next;
        public bool Frozen;
    }

    private readonly record struct PairCandidate(int Left, int Right, int Length);

    private sealed class PairPriority : IComparer<(float Score, int Left)>
    {
        public static readonly PairPriority Instance = new();
        // PriorityQueue dequeues the smallest: higher score first, then the leftmost pair.
        public int Compare((float Score, int Left) a, (float Score, int Left) b)
        {
            int c = b.Score.CompareTo(a.Score);
            return c != 0 ? c : a.Left.CompareTo(b.Left);
        }
    }

    /// <summary>
    /// Splits the text where no merge can ever cross (between two code units whose pair occurs inside no mergeable
    /// piece: any piece spanning the boundary would contain that pair) and encodes the chunks independently, reusing
    /// the ids of chunks seen before. Merges in different chunks never interact, so the ids are exactly those of
    /// encoding the whole text at once; for Llama-style vocabularies the chunks are words, which makes long texts fast.
    /// </summary>
    private void EncodeInChunks(string s, List<int> output)
    {
        var cache = new Dictionary<string, int[]>(StringComparer.Ordinal);
        var lookup = cache.GetAlternateLookup<ReadOnlySpan<char>>();
        var scratch = new List<int>();
        int bodyStart = output.Count, start = 0;
        for (int i = 1; i <= s.Length; i++)
        {
            if (i < s.Length && (char.IsLowSurrogate(s[i]) || _innerBigrams.Contains(((uint)s[i - 1] << 16) | s[i]))) continue;
            var chunk = s.AsSpan(start, i - start);
            if (!lookup.TryGetValue(chunk, out var ids))
            {
                scratch.Clear();
                EncodeNormalized(chunk.ToString(), scratch);
                ids = scratch.ToArray();
                if (chunk.Length <= 256) lookup[chunk] = ids;
            }
            output.AddRange(ids);
            start = i;
        }
        if (!_byteFallback) CollapseUnknownRuns(output, bodyStart);
    }

    /// <summary>Without byte fallback sentencepiece merges a run of unknown pieces into one unknown token
    /// (sentencepiece_processor.cc). Only unknown characters produce the unknown id, so runs of it are such runs.</summary>
    private void CollapseUnknownRuns(List<int> output, int from)
    {
        int write = from;
        for (int read = from; read < output.Count; read++)
        {
            if (output[read] == _unkId && write > from && output[write - 1] == _unkId) continue;
            output[write++] = output[read];
        }
        output.RemoveRange(write, output.Count - write);
    }

    private void EncodeNormalized(string s, List<int> output)
    {
        var symbols = new List<Symbol>(s.Length);
        for (int i = 0; i < s.Length;)
        {
            int len = MatchUserDefined(s, i);
            bool frozen = len > 0;
            if (!frozen) len = char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]) ? 2 : 1;
            symbols.Add(new Symbol { Start = i, Length = len, Prev = symbols.Count - 1, Next = symbols.Count + 1, Frozen = frozen });
            i += len;
        }
        var sym = symbols.ToArray();
        sym[^1].Next = -1;

        var agenda = new PriorityQueue<PairCandidate, (float, int)>(sym.Length, PairPriority.Instance);
        Dictionary<(int Start, int Length), (int LeftLength, int RightStart, int RightLength)>? unusedMerges = null;

        void TryAdd(int left, int right)
        {
            if (left < 0 || right < 0 || sym[left].Frozen || sym[right].Frozen) return;
            int length = sym[left].Length + sym[right].Length;
            if (!_mergeable.TryGetValue(s.AsSpan(sym[left].Start, length), out var entry)) return;
            agenda.Enqueue(new PairCandidate(left, right, length), (entry.Score, left));
            if (entry.Unused)
            {
                unusedMerges ??= new();
                unusedMerges[(sym[left].Start, length)] = (sym[left].Length, sym[right].Start, sym[right].Length);
            }
        }

        for (int i = 1; i < sym.Length; i++) TryAdd(i - 1, i);

        while (agenda.TryDequeue(out var top, out _))
        {
            ref var left = ref sym[top.Left];
            ref var right = ref sym[top.Right];
            // Stale when either side was merged away or grew since the pair was queued.
            if (left.Length == 0 || right.Length == 0 || left.Next != top.Right || left.Length + right.Length != top.Length) continue;
            left.Length = top.Length;
            left.Next = right.Next;
            if (right.Next >= 0) sym[right.Next].Prev = top.Left;
            right.Length = 0;
            TryAdd(left.Prev, top.Left);
            TryAdd(top.Left, left.Next);
        }

        for (int i = 0; i >= 0; i = sym[i].Next)
            Emit(s, sym[i].Start, sym[i].Length, unusedMerges, output);
    }

    private int MatchUserDefined(string s, int at)
    {
        foreach (var piece in _userDefined)
            if (at + piece.Length <= s.Length && string.CompareOrdinal(s, at, piece, 0, piece.Length) == 0) return piece.Length;
        return 0;
    }

    private void Emit(string s, int start, int length, Dictionary<(int, int), (int LeftLength, int RightStart, int RightLength)>? unusedMerges, List<int> output)
    {
        var span = s.AsSpan(start, length);
        if (_pieceIds.TryGetValue(span, out var id))
        {
            // Unused pieces may be reached by merging but are never output: split them back (sentencepiece's resegment).
            if (_pieces[id].Type == SentencePieceType.Unused && unusedMerges is not null && unusedMerges.TryGetValue((start, length), out var split))
            {
                Emit(s, start, split.LeftLength, unusedMerges, output);
                Emit(s, split.RightStart, split.RightLength, unusedMerges, output);
                return;
            }
            if (_pieces[id].Type is SentencePieceType.Normal or SentencePieceType.UserDefined or SentencePieceType.Unused)
            {
                output.Add(id);
                return;
            }
        }
        if (_byteFallback)
        {
            Span<byte> bytes = stackalloc byte[Encoding.UTF8.GetMaxByteCount(span.Length)];
            int n = Encoding.UTF8.GetBytes(span, bytes);
            for (int i = 0; i < n; i++)
                output.Add(_byteIds[bytes[i]] >= 0 ? _byteIds[bytes[i]] : _unkId);
            return;
        }
        output.Add(_unkId); // runs are collapsed in EncodeInChunks
    }

    /// <inheritdoc/>
    /// <remarks>Ids outside [0, VocabSize) and control/unknown pieces are skipped; byte pieces are joined and read as
    /// UTF-8 (each byte of an invalid sequence becomes U+FFFD, as Hugging Face's ByteFallback decoder does).</remarks>
    public string Decode(IReadOnlyList<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var sb = new StringBuilder();
        var pending = new List<byte>();
        foreach (var id in ids)
        {
            if (id < 0 || id >= _pieces.Length) continue;
            var p = _pieces[id];
            switch (p.Type)
            {
                case SentencePieceType.Control:
                case SentencePieceType.Unknown:
                    continue;
                case SentencePieceType.Byte when TryByteValue(p.Piece, out var b):
                    pending.Add(b);
                    continue;
            }
            FlushBytes(pending, sb);
            sb.Append(p.Piece);
        }
        FlushBytes(pending, sb);
        if (_escapeWhitespaces) sb.Replace(SpaceSymbol, ' ');
        if (_addDummyPrefix && sb.Length > 0)
        {
            if (_whitespaceAsSuffix) { if (sb[^1] == ' ') sb.Length--; }
            else if (sb[0] == ' ') sb.Remove(0, 1);
        }
        return sb.ToString();
    }

    private static bool TryByteValue(string piece, out byte value)
    {
        value = 0;
        return piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) &&
               byte.TryParse(piece.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, null, out value);
    }

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private static void FlushBytes(List<byte> pending, StringBuilder sb)
    {
        if (pending.Count == 0) return;
        try
        {
            sb.Append(StrictUtf8.GetString(pending.ToArray()));
        }
        catch (DecoderFallbackException)
        {
            sb.Append('\uFFFD', pending.Count);
        }
        pending.Clear();
    }

    /// <summary>Nothing to release; present for <see cref="ITextTokenizer"/>.</summary>
    public void Dispose() { }

    /// <inheritdoc/>
    public override string ToString() => Name;
}
