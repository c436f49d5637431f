using MoECompress.Compression.Tokenization;

namespace MoECompress.Compression.Data;

/// <summary>
/// Tokenizes input documents and joins them into one token stream: documents in file order (files in the order
/// <see cref="TextDocumentReader.ResolveFiles"/> gives), each followed by a separator except the last.
/// The separator is the tokenizer's EOS token, or its BOS token when it has no EOS, or nothing when it has neither.
/// Text documents are encoded without special tokens; pre-tokenized documents are copied as they are.
/// </summary>
internal static class TokenStreamBuilder
{
    internal sealed record Result(int[] Tokens, IReadOnlyList<string> Files, int Documents, int PretokenizedDocuments, int? SeparatorId);

    public static Result Build(string fileOrFolder, ITextTokenizer tokenizer, TextDocumentSplit split,
        IProgress<string>? progress, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        var files = TextDocumentReader.ResolveFiles(fileOrFolder);
        int? separator = tokenizer.EosId ?? tokenizer.BosId;
        var parallel = new ParallelOptions { CancellationToken = cancellationToken, MaxDegreeOfParallelism = Environment.ProcessorCount };

        // Read every file first (sequentially, so errors name the first bad file), then tokenize all documents in
        // parallel: calibration inputs are often a few large single-document files.
        var perFile = new List<IReadOnlyList<TextDocument>>(files.Count);
        foreach (var file in files)
        {
            cancellationToken.ThrowIfCancellationRequested();
            perFile.Add(TextDocumentReader.ReadFile(file, split, tokenizer.VocabSize, cancellationToken));
        }
        var docs = perFile.SelectMany(d => d).ToArray();
        progress?.Report($"tokenizing {docs.Length} document(s) from {files.Count} file(s) with {tokenizer.Name}");
        var parts = new int[docs.Length][];
        // Longest documents first so that one large file does not start last; each slot is written once, so the
        // order of work does not change the result.
        var order = Enumerable.Range(0, docs.Length).OrderByDescending(i => docs[i].Text?.Length ?? 0).ToArray();
        Parallel.ForEach(order, parallel, i =>
            parts[i] = docs[i].Ids ?? tokenizer.Encode(docs[i].Text!, addSpecialTokens: false));

        int documents = docs.Length, pretokenized = docs.Count(d => d.Ids is not null), first = 0;
        for (int f = 0; f < files.Count; f++)
        {
            long fileTokens = 0;
            for (int i = 0; i < perFile[f].Count; i++) fileTokens += parts[first + i].Length;
            first += perFile[f].Count;
            progress?.Report($"tokenized {files[f]}: {perFile[f].Count} document(s), {fileTokens:N0} tokens");
        }

        long total = 0;
        foreach (var p in parts) total += p.Length;
        if (separator is not null) total += parts.Length - 1;
        if (total > Array.MaxLength)
            throw new MoECompress.Formats.Errors.MoeCompressException(MoECompress.Formats.Errors.ErrorKind.Usage,
                $"{fileOrFolder}: {total:N0} tokens exceed what one stream can hold ({Array.MaxLength:N0}); use a smaller input");

        var tokens = new int[total];
        int at = 0;
        for (int i = 0; i < parts.Length; i++)
        {
            if (i > 0 && separator is not null) tokens[at++] = separator.Value;
            parts[i].CopyTo(tokens, at);
            at += parts[i].Length;
        }
        return new Result(tokens, files, documents, pretokenized, separator);
    }
}
