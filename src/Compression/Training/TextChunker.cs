namespace MoECompress.Compression.Training;

/// <summary>
/// Cuts a domain text file into documents for language modelling: consecutive lines are joined with '\n' until
/// adding the next line would exceed the chunk size (a longer single line becomes its own chunk); blank lines are kept
/// inside chunks, chunks never start with a blank line. Deterministic: the same file and size give the same chunks.
/// </summary>
public static class TextChunker
{
    public static List<string> Chunk(IEnumerable<string> lines, int maxCharacters)
    {
        var chunks = new List<string>();
        var current = new System.Text.StringBuilder();
        foreach (var line in lines)
        {
            if (current.Length == 0 && line.Trim().Length == 0) continue;
            if (current.Length > 0 && current.Length + 1 + line.Length > maxCharacters)
            {
                chunks.Add(current.ToString().TrimEnd());
                current.Clear();
                if (line.Trim().Length == 0) continue;
            }
            if (current.Length > 0) current.Append('\n');
            current.Append(line);
        }
        if (current.Length > 0 && current.ToString().Trim().Length > 0) chunks.Add(current.ToString().TrimEnd());
        return chunks;
    }
}
