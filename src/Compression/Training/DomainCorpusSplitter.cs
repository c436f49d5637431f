using System.Text.Json;
using System.Text.Json.Nodes;

namespace MoECompress.Compression.Training;

/// <summary>
/// Builds the bundled text folder from the domain samples (<c>&lt;domain&gt;_texts.txt</c>): for each domain the
/// last <c>heldOutFraction</c> of the lines go to <c>heldout/&lt;domain&gt;.txt</c>, the rest to
/// <c>train/&lt;domain&gt;.txt</c> (lines copied verbatim), and <c>calibration.jsonl</c> gets
/// <c>samplesPerDomain</c> samples per domain, each a run of consecutive training lines (chunked as
/// <see cref="TextChunker"/> does) taken at evenly spaced positions. Deterministic; never modifies the sources.
/// </summary>
public static class DomainCorpusSplitter
{
    public static void Split(string sourceDirectory, IReadOnlyList<string> domains, string destinationDirectory,
        double heldOutFraction = 0.1, int samplesPerDomain = 32, int sampleCharacters = 2000)
    {
        if (heldOutFraction <= 0 || heldOutFraction >= 1)
            throw new MoECompress.Formats.Errors.MoeCompressException(MoECompress.Formats.Errors.ErrorKind.Usage,
                $"held-out fraction must be in (0, 1) (got {heldOutFraction})");
        var trainDir = Path.Combine(destinationDirectory, "train");
        var heldDir = Path.Combine(destinationDirectory, "heldout");
        Directory.CreateDirectory(trainDir);
        Directory.CreateDirectory(heldDir);
        var utf8 = new System.Text.UTF8Encoding(false);
        using var calibration = new StreamWriter(Path.Combine(destinationDirectory, "calibration.jsonl"), false, utf8) { NewLine = "\n" };
        foreach (var domain in domains)
        {
            var source = Path.Combine(sourceDirectory, domain + "_texts.txt");
            if (!File.Exists(source))
                throw new MoECompress.Formats.Errors.MoeCompressException(MoECompress.Formats.Errors.ErrorKind.Usage,
                    $"domain sample '{source}' does not exist");
            var lines = File.ReadAllLines(source, utf8);
            int trainCount = lines.Length - (int)Math.Round(lines.Length * heldOutFraction);
            WriteLines(Path.Combine(trainDir, domain + ".txt"), lines.Take(trainCount), utf8);
            WriteLines(Path.Combine(heldDir, domain + ".txt"), lines.Skip(trainCount), utf8);

            var chunks = TextChunker.Chunk(lines.Take(trainCount), sampleCharacters);
            int n = Math.Min(samplesPerDomain, chunks.Count);
            for (int i = 0; i < n; i++)
            {
                var text = chunks[(int)((long)i * chunks.Count / n)];
                calibration.WriteLine(new JsonObject { ["domain"] = domain, ["text"] = text }.ToJsonString(
                    new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }));
            }
        }
    }

    private static void WriteLines(string path, IEnumerable<string> lines, System.Text.Encoding encoding)
    {
        using var writer = new StreamWriter(path, false, encoding) { NewLine = "\n" };
        foreach (var line in lines) writer.WriteLine(line);
    }
}
