using System.Text;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Input;

namespace MoECompress.Compression.Tokenization;

/// <summary>Kind of a SentencePiece vocabulary entry (sentencepiece_model.proto, SentencePiece.Type).</summary>
public enum SentencePieceType : byte
{
    /// <summary>An ordinary piece.</summary>
    Normal = 1,
    /// <summary>The unknown token.</summary>
    Unknown = 2,
    /// <summary>A control token (BOS, EOS, PAD).</summary>
    Control = 3,
    /// <summary>A user-defined symbol, always one token.</summary>
    UserDefined = 4,
    /// <summary>A piece the encoder must not output (it is split again).</summary>
    Unused = 5,
    /// <summary>A byte-fallback piece &lt;0xNN&gt;.</summary>
    Byte = 6,
}

/// <summary>One vocabulary entry of a SentencePiece model.</summary>
public readonly record struct SentencePieceEntry(string Piece, float Score, SentencePieceType Type);

/// <summary>
/// The parts of a SentencePiece <c>.model</c> file (a serialized ModelProto) that encoding needs: the pieces with
/// scores and types, the model type, byte fallback, special ids and the normalizer settings.
/// Field numbers follow sentencepiece's sentencepiece_model.proto.
/// </summary>
public sealed class SentencePieceModelFile
{
    /// <summary>Vocabulary, id = index.</summary>
    public IReadOnlyList<SentencePieceEntry> Pieces { get; }
    /// <summary>TrainerSpec.model_type: 1 = Unigram, 2 = BPE, 3 = Word, 4 = Char.</summary>
    public int ModelType { get; }
    /// <summary>TrainerSpec.byte_fallback.</summary>
    public bool ByteFallback { get; }
    /// <summary>TrainerSpec.unk_id (default 0).</summary>
    public int UnkId { get; }
    /// <summary>TrainerSpec.bos_id (default 1; -1 = none).</summary>
    public int BosId { get; }
    /// <summary>TrainerSpec.eos_id (default 2; -1 = none).</summary>
    public int EosId { get; }
    /// <summary>TrainerSpec.treat_whitespace_as_suffix.</summary>
    public bool TreatWhitespaceAsSuffix { get; }
    /// <summary>NormalizerSpec.name ("identity", "nmt_nfkc", ...).</summary>
    public string NormalizerName { get; }
    /// <summary>Length of NormalizerSpec.precompiled_charsmap (0 = no character normalization).</summary>
    public int PrecompiledCharsMapLength { get; }
    /// <summary>NormalizerSpec.add_dummy_prefix (default true).</summary>
    public bool AddDummyPrefix { get; }
    /// <summary>NormalizerSpec.remove_extra_whitespaces (default true).</summary>
    public bool RemoveExtraWhitespaces { get; }
    /// <summary>NormalizerSpec.escape_whitespaces (default true).</summary>
    public bool EscapeWhitespaces { get; }
    /// <summary>The file this was read from.</summary>
    public string FilePath { get; }

    private SentencePieceModelFile(string path, List<SentencePieceEntry> pieces, int modelType, bool byteFallback, int unk, int bos, int eos,
        bool suffix, string normName, int charsMapLength, bool dummyPrefix, bool removeExtra, bool escape)
    {
        FilePath = path; Pieces = pieces; ModelType = modelType; ByteFallback = byteFallback; UnkId = unk; BosId = bos; EosId = eos;
        TreatWhitespaceAsSuffix = suffix; NormalizerName = normName; PrecompiledCharsMapLength = charsMapLength;
        AddDummyPrefix = dummyPrefix; RemoveExtraWhitespaces = removeExtra; EscapeWhitespaces = escape;
    }

    /// <summary>Reads a SentencePiece model file.</summary>
    /// <exception cref="MoeCompressException">The file is not a SentencePiece model (ErrorKind.InvalidConfig).</exception>
    public static SentencePieceModelFile Read(string path)
    {
        byte[] data;
        data = InputFile.ReadAllBytes(path, "SentencePiece model", ErrorKind.InvalidConfig, maxBytes: 1L << 30);
        try
        {
            return Parse(path, data);
        }
        catch (FormatException e)
        {
            throw new MoeCompressException(ErrorKind.InvalidConfig, $"{path}: not a SentencePiece model ({e.Message})", e);
        }
    }

    private static SentencePieceModelFile Parse(string path, byte[] data)
    {
        var pieces = new List<SentencePieceEntry>();
        int modelType = 1, unk = 0, bos = 1, eos = 2;
        bool byteFallback = false, suffix = false, dummy = true, removeExtra = true, escape = true;
        string normName = "";
        int charsMap = 0;

        var reader = new ProtoReader(data, 0, data.Length);
        while (reader.Next(out int field, out int wire))
        {
            switch (field)
            {
                case 1 when wire == 2: // repeated SentencePiece pieces
                {
                    var (start, length) = reader.ReadLengthDelimited();
                    var p = new ProtoReader(data, start, length);
                    string piece = ""; float score = 0; var type = SentencePieceType.Normal;
                    while (p.Next(out int f, out int w))
                    {
                        if (f == 1 && w == 2) { var (s, l) = p.ReadLengthDelimited(); piece = Encoding.UTF8.GetString(data, s, l); }
                        else if (f == 2 && w == 5) score = p.ReadFloat();
                        else if (f == 3 && w == 0) type = (SentencePieceType)p.ReadVarint();
                        else p.Skip(w);
                    }
                    pieces.Add(new SentencePieceEntry(piece, score, type));
                    break;
                }
                case 2 when wire == 2: // TrainerSpec
                {
                    var (start, length) = reader.ReadLengthDelimited();
                    var p = new ProtoReader(data, start, length);
                    while (p.Next(out int f, out int w))
                    {
                        if (w != 0) { p.Skip(w); continue; }
                        long v = p.ReadVarint();
                        switch (f)
                        {
                            case 3: modelType = (int)v; break;
                            case 24: suffix = v != 0; break;
                            case 35: byteFallback = v != 0; break;
                            case 40: unk = (int)v; break;
                            case 41: bos = (int)v; break;
                            case 42: eos = (int)v; break;
                        }
                    }
                    break;
                }
                case 3 when wire == 2: // NormalizerSpec
                {
                    var (start, length) = reader.ReadLengthDelimited();
                    var p = new ProtoReader(data, start, length);
                    while (p.Next(out int f, out int w))
                    {
                        if (f == 1 && w == 2) { var (s, l) = p.ReadLengthDelimited(); normName = Encoding.UTF8.GetString(data, s, l); }
                        else if (f == 2 && w == 2) charsMap = p.ReadLengthDelimited().Length;
                        else if (f == 3 && w == 0) dummy = p.ReadVarint() != 0;
                        else if (f == 4 && w == 0) removeExtra = p.ReadVarint() != 0;
                        else if (f == 5 && w == 0) escape = p.ReadVarint() != 0;
                        else p.Skip(w);
                    }
                    break;
                }
                default:
                    reader.Skip(wire);
                    break;
            }
        }
        if (pieces.Count == 0) throw new FormatException("no vocabulary pieces");
        return new SentencePieceModelFile(path, pieces, modelType, byteFallback, unk, bos, eos, suffix, normName, charsMap, dummy, removeExtra, escape);
    }

    /// <summary>Minimal protobuf wire-format reader over a byte range.</summary>
    private struct ProtoReader(byte[] data, int start, int length)
    {
        private int _pos = start;
        private readonly int _end = start + length;

        public bool Next(out int field, out int wire)
        {
            if (_pos >= _end) { field = 0; wire = 0; return false; }
            long key = ReadVarint();
            field = (int)(key >> 3);
            wire = (int)(key & 7);
            if (field == 0) throw new FormatException($"field number 0 at byte {_pos}");
            return true;
        }

        public long ReadVarint()
        {
            ulong result = 0;
            for (int shift = 0; shift < 64; shift += 7)
            {
                if (_pos >= _end) throw new FormatException("truncated varint");
                byte b = data[_pos++];
                result |= (ulong)(b & 0x7f) << shift;
                if (b < 0x80) return (long)result;
            }
            throw new FormatException("varint longer than 10 bytes");
        }

        public float ReadFloat()
        {
            if (_pos + 4 > _end) throw new FormatException("truncated float");
            float v = System.Buffers.Binary.BinaryPrimitives.ReadSingleLittleEndian(data.AsSpan(_pos, 4));
            _pos += 4;
            return v;
        }

        public (int Start, int Length) ReadLengthDelimited()
        {
            long n = ReadVarint();
            if (n < 0 || _pos + n > _end) throw new FormatException($"length {n} at byte {_pos} runs past the end");
            var r = (_pos, (int)n);
            _pos += (int)n;
            return r;
        }

        public void Skip(int wire)
        {
            switch (wire)
            {
                case 0: ReadVarint(); break;
                case 1: _pos += 8; break;
                case 2: ReadLengthDelimited(); break;
                case 5: _pos += 4; break;
                default: throw new FormatException($"unsupported wire type {wire} at byte {_pos}");
            }
            if (_pos > _end) throw new FormatException("field runs past the end");
        }
    }
}
