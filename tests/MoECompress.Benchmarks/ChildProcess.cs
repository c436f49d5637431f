using System.Diagnostics;

namespace MoECompress.Benchmarks;

/// <summary>Runs this benchmark executable again with a child verb, so each measured run has its own peak RSS.</summary>
internal static class ChildProcess
{
    public static string Run(params string[] args)
    {
        var self = Environment.ProcessPath ?? throw new InvalidOperationException("no process path");
        var psi = new ProcessStartInfo(self) { RedirectStandardOutput = true, UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(self) == "dotnet") psi.ArgumentList.Add(typeof(ChildProcess).Assembly.Location);
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        string output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"benchmark child '{args[0]}' failed ({p.ExitCode}): {output}");
        return output;
    }

    /// <summary>The value of a "key=value" line the child printed.</summary>
    public static string Value(string output, string key) =>
        output.Split('\n').First(l => l.StartsWith(key + "=", StringComparison.Ordinal))[(key.Length + 1)..].Trim();
}
