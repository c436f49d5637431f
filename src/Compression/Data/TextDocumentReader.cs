using System.Text;
using System.Text.Json;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Input;

namespace MoECompress.Compression.Data;

/// <summary>
/// Reads calibration/evaluation input into documents: a .txt file (divided by <see cref="TextDocumentSplit"/>), a .jsonl
/// file (one JSON object per line with a "text" string or an "input_ids" array of integers; blank lines are skipped),
/// or a folder (its .txt and .jsonl files, not recursing, in ordinal order of file name). Input files are only read.
/// </summary>
public static class TextDocumentReader
{
    /// <summary>File extensions read, lower case.</summary>
    public static IReadOnlyList<string> Extensions { get; } = [".txt", ".jsonl"];

    /// <summary>The files <paramref name="fileOrFolder"/> stands for, in reading order.</summary>
    /// <exception cref="MoeCompressException">Missing path, unsupported extension, or a folder without input files (ErrorKind.Usage).</exception>
    public static IReadOnlyList<string> ResolveFiles(string fileOrFolder)
    {
        ArgumentNullException.ThrowIfNull(fileOrFolder);
        var full = Path.GetFullPath(fileOrFolder);
        if (Directory.Exists(full))
        {
            var files = Directory.EnumerateFiles(full)
                .Where(f => Extensions.Contains(Path.GetExtension(f).ToLowerInvariant()))
                .OrderBy(f => Path.GetFileName(f), StringComparer.Ordinal)
                .ToList();
            if (files.Count == 0)
                throw new MoeCompressException(ErrorKind.Usage, $"{full}: folder holds no {string.Join(" or ", Extensions)} files");
            return files;
        }
        if (!File.Exists(full))
            throw new MoeCompressException(ErrorKind.Usage, $"{full}: no such file or folder");
        if (!Extensions.Contains(Path.GetExtension(full).ToLowerInvariant()))
            throw new MoeCompressException(ErrorKind.Usage, $"{full}: unsupported file type (expected {string.Join(" or ", Extensions)})");
        return [full];
    }

    /// <summary>Reads the documents of one file.</summary>
    /// <param name="file">A .txt or .jsonl file.</param>
    /// <param name="split">How .txt files are divided into documents.</param>
    /// <param name="vocabSize">Pre-tokenized ids must lie in [0, vocabSize).</param>
    /// <param name="cancellationToken">Stops reading between lines.</param>
    /// <exception cref="MoeCompressException">Empty file, bad JSON line, wrong fields, ids out of range (ErrorKind.Usage), naming file and line.</exception>
    public static IReadOnlyList<TextDocument> ReadFile(string file, TextDocumentSplit split, int vocabSize, CancellationToken cancellationToken = default)
    {
        InputFile.RequireRegularFile(file, "data file", ErrorKind.Usage); // before opening: a named pipe would block
        var docs = Path.GetExtension(file).Equals(".jsonl", StringComparison.OrdinalIgnoreCase)
            ? ReadJsonLines(file, vocabSize, cancellationToken)
            : ReadText(file, split);
        if (docs.Count == 0)
            throw new MoeCompressException(ErrorKind.Usage, $"{file}: file is empty (no text or input_ids to use)");
        return docs;
    }

    private static List<TextDocument> ReadText(string file, TextDocumentSplit split)
    {
        string text;
        try { text = File.ReadAllText(file, Encoding.UTF8); }
        catch (IOException e) { throw new MoeCompressException(ErrorKind.Io, $"{file}: cannot read ({e.Message})", e); }
        var docs = new List<TextDocument>();
        if (string.IsNullOrWhiteSpace(text)) return docs;
        switch (split)
        {
            case TextDocumentSplit.WholeFile:
                docs.Add(new TextDocument(file, 1, text, null));
                break;
            case TextDocumentSplit.Lines:
            case TextDocumentSplit.BlankLines:
            {
                var lines = text.Split('\n');
                var current = new StringBuilder();
                int start = 0;
                for (int i = 0; i < lines.Length; i++)
                {
                    var line = lines[i].TrimEnd('\r');
                    bool blank = string.IsNullOrWhiteSpace(line);
                    if (split == TextDocumentSplit.Lines)
                    {
                        if (!blank) docs.Add(new TextDocument(file, i + 1, line, null));
                        continue;
                    }
                    if (blank)
                    {
                        if (current.Length > 0) docs.Add(new TextDocument(file, start, current.ToString(), null));
                        current.Clear();
                        continue;
                    }
                    if (current.Length == 0) start = i + 1;
                    else current.Append('\n');
                    current.Append(line);
                }
                if (current.Length > 0) docs.Add(new TextDocument(file, start, current.ToString(), null));
                break;
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(split), split, null);
        }
        return docs;
    }

    private static List<TextDocument> ReadJsonLines(string file, int vocabSize, CancellationToken cancellationToken)
    {
        var docs = new List<TextDocument>();
        int lineNo = 0;
        try
        {
            foreach (var line in File.ReadLines(file, Encoding.UTF8))
            {
                lineNo++;
                ParseJsonLine(line, lineNo, file, vocabSize, docs, cancellationToken);
            }
        }
        catch (IOException e)
        {
            throw new MoeCompressException(ErrorKind.Io, $"{file}: cannot read ({e.Message})", e);
        }
        return docs;
    }

    private static void ParseJsonLine(string line, int lineNo, string file, int vocabSize, List<TextDocument> docs, CancellationToken cancellationToken)
    {
        if (string.IsNullOrWhiteSpace(line)) return;
        if ((lineNo & 1023) == 0) cancellationToken.ThrowIfCancellationRequested();
        JsonDocument json;
        try
        {
            json = JsonDocument.Parse(line);
        }
        catch (JsonException e)
        {
            throw new MoeCompressException(ErrorKind.Usage, $"{file}:{lineNo}: invalid JSON ({FirstLine(e.Message)})", e);
        }
        using (json)
        {
            var root = json.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new MoeCompressException(ErrorKind.Usage, $"{file}:{lineNo}: expected a JSON object, found {MoECompress.Formats.Input.StrictJson.Describe(root.ValueKind)}");
            // A line with both fields is taken as pre-tokenized: "input_ids" are used as they are.
            if (root.TryGetProperty("input_ids", out var ids))
            {
                docs.Add(new TextDocument(file, lineNo, null, ReadIds(ids, vocabSize, file, lineNo)));
            }
            else if (root.TryGetProperty("text", out var text))
            {
                if (text.ValueKind != JsonValueKind.String)
                    throw new MoeCompressException(ErrorKind.Usage, $"{file}:{lineNo}: \"text\" must be a string, found {MoECompress.Formats.Input.StrictJson.Describe(text.ValueKind)}");
                var s = text.GetString()!;
                if (s.Length > 0) docs.Add(new TextDocument(file, lineNo, s, null));
            }
            else
            {
                throw new MoeCompressException(ErrorKind.Usage,
                    $"{file}:{lineNo}: object has neither \"text\" (a string) nor \"input_ids\" (an array of integers)");
            }
        }
    }

    private static int[] ReadIds(JsonElement ids, int vocabSize, string file, int lineNo)
    {
        if (ids.ValueKind != JsonValueKind.Array)
            throw new MoeCompressException(ErrorKind.Usage, $"{file}:{lineNo}: \"input_ids\" must be an array of integers, found {MoECompress.Formats.Input.StrictJson.Describe(ids.ValueKind)}");
        var result = new int[ids.GetArrayLength()];
        int i = 0;
        foreach (var e in ids.EnumerateArray())
        {
            if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out var id))
                throw new MoeCompressException(ErrorKind.Usage, $"{file}:{lineNo}: input_ids[{i}] is not an integer ({e.GetRawText()})");
            if (id < 0 || id >= vocabSize)
                throw new MoeCompressException(ErrorKind.Usage, $"{file}:{lineNo}: input_ids[{i}] = {id} is outside the tokenizer's ids 0..{vocabSize - 1}");
            result[i++] = id;
        }
        return result;
    }

    private static string FirstLine(string message)
    {
        var i = message.IndexOfAny(['\r', '\n']);
        return i < 0 ? message : message[..i];
    }
}
