using System.Text;
using MoECompress.Compression.Tokenization;

namespace MoECompress.Tests.Tokenization;

/// <summary>Writes small SentencePiece ModelProto files (sentencepiece_model.proto wire format) for hand-checkable tests.</summary>
internal sealed class SentencePieceModelBuilder
{
    private readonly List<(string Piece, float Score, SentencePieceType Type)> _pieces = [];
    public int ModelType { get; init; } = 2; // 1 = Unigram, 2 = BPE
    public bool ByteFallback { get; init; }
    public bool AddDummyPrefix { get; init; } = true;
    public bool RemoveExtraWhitespaces { get; init; }

    /// <summary>Starts with &lt;unk&gt; (0), &lt;s&gt; (1), &lt;/s&gt; (2), like Llama models.</summary>
    public SentencePieceModelBuilder()
    {
        Add("<unk>", 0, SentencePieceType.Unknown);
        Add("<s>", 0, SentencePieceType.Control);
        Add("</s>", 0, SentencePieceType.Control);
    }

    public SentencePieceModelBuilder Add(string piece, float score, SentencePieceType type = SentencePieceType.Normal)
    {
        _pieces.Add((piece, score, type));
        return this;
    }

    public SentencePieceModelBuilder AddBytes()
    {
        for (int b = 0; b < 256; b++) Add($"<0x{b:X2}>", 0, SentencePieceType.Byte);
        return this;
    }

    public int Id(string piece) => _pieces.FindIndex(p => p.Piece == piece);

    public void Write(string path)
    {
        var model = new MemoryStream();
        foreach (var (piece, score, type) in _pieces)
        {
            var sp = new MemoryStream();
            Bytes(sp, 1, Encoding.UTF8.GetBytes(piece));
            Key(sp, 2, 5);
            sp.Write(BitConverter.GetBytes(score));
            Varint(sp, 3, (ulong)type);
            Bytes(model, 1, sp.ToArray());
        }
        var trainer = new MemoryStream();
        Varint(trainer, 3, (ulong)ModelType);
        Varint(trainer, 35, ByteFallback ? 1UL : 0UL);
        Varint(trainer, 40, 0);
        Varint(trainer, 41, 1);
        Varint(trainer, 42, 2);
        Bytes(model, 2, trainer.ToArray());
        var normalizer = new MemoryStream();
        Bytes(normalizer, 1, Encoding.UTF8.GetBytes("identity"));
        Varint(normalizer, 3, AddDummyPrefix ? 1UL : 0UL);
        Varint(normalizer, 4, RemoveExtraWhitespaces ? 1UL : 0UL);
        Varint(normalizer, 5, 1);
        Bytes(model, 3, normalizer.ToArray());
        File.WriteAllBytes(path, model.ToArray());
    }

    private static void Key(Stream s, int field, int wire) => Raw(s, (ulong)((field << 3) | wire));

    private static void Varint(Stream s, int field, ulong value)
    {
        Key(s, field, 0);
        Raw(s, value);
    }

    private static void Bytes(Stream s, int field, byte[] bytes)
    {
        Key(s, field, 2);
        Raw(s, (ulong)bytes.Length);
        s.Write(bytes);
    }

    private static void Raw(Stream s, ulong v)
    {
        while (v >= 0x80) { s.WriteByte((byte)(v | 0x80)); v >>= 7; }
        s.WriteByte((byte)v);
    }
}
