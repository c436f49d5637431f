using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace MoECompress.Cli.Rendering;

/// <summary>Prints a command's result object as indented JSON (the <c>--json</c> output of commands without a report type).</summary>
internal static class ResultJson
{
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static string Write(JsonObject result) => result.ToJsonString(Indented);
}
