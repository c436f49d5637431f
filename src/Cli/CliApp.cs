using System.CommandLine;
using MoECompress.Cli.Commands;
using MoECompress.Formats.Errors;

namespace MoECompress.Cli;

/// <summary>
/// The `moe-compress` command line: parses arguments, runs one library call per command, renders progress and maps
/// failures to exit codes (see <see cref="ErrorKind"/>; 130 when cancelled with Ctrl+C).
/// </summary>
public static class CliApp
{
    public const int CancelledExitCode = 130;

    public static RootCommand BuildRoot(TextWriter stdout, TextWriter stderr)
    {
        var root = new RootCommand("moe-compress: prune, merge and quantize Mixture-of-Experts checkpoints and measure what it costs.");
        foreach (var command in CommandCatalog.Create(stdout, stderr))
            root.Subcommands.Add(command);
        return root;
    }

    public static async Task<int> RunAsync(string[] args, TextWriter stdout, TextWriter stderr, CancellationToken ct = default)
    {
        var root = BuildRoot(stdout, stderr);
        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            foreach (var error in parsed.Errors)
                stderr.WriteLine($"moe-compress: error: {error.Message}");
            stderr.WriteLine("Run 'moe-compress --help' for usage.");
            return (int)ErrorKind.Usage;
        }

        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; cts.Cancel(); };
        Console.CancelKeyPress += onCancel;
        try
        {
            return await parsed.InvokeAsync(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false }, cts.Token);
        }
        catch (MoeCompressException ex)
        {
            stderr.WriteLine($"moe-compress: error: {ex.Message}");
            return ex.ExitCode;
        }
        catch (OperationCanceledException)
        {
            stderr.WriteLine("moe-compress: cancelled; no output was written.");
            return CancelledExitCode;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            stderr.WriteLine($"moe-compress: error: {ex.Message}");
            return (int)ErrorKind.Io;
        }
        catch (Exception ex)
        {
            stderr.WriteLine($"moe-compress: internal error ({ex.GetType().Name}): {ex.Message}");
            if (Environment.GetEnvironmentVariable("MOE_COMPRESS_DEBUG") == "1") stderr.WriteLine(ex);
            return (int)ErrorKind.Internal;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }
}
