using System.CommandLine;
using System.CommandLine.Invocation;
using System.Reflection;
using MoECompress.Cli.Commands;
using MoECompress.Cli.Rendering;
using MoECompress.Formats.Errors;

namespace MoECompress.Cli;

/// <summary>
/// The `moe-compress` command line: parses arguments, runs one library call per command, renders progress and maps
/// failures to exit codes (see <see cref="ErrorKind"/>; 130 when cancelled with Ctrl+C).
/// </summary>
public static class CliApp
{
    public const int CancelledExitCode = 130;

    public static RootCommand BuildRoot(TextWriter stdout, TextWriter stderr) => BuildRoot(stdout, stderr, new GlobalOptions());

    private static RootCommand BuildRoot(TextWriter stdout, TextWriter stderr, GlobalOptions global)
    {
        var root = new RootCommand("moe-compress: prune, merge and quantize Mixture-of-Experts checkpoints and measure what it costs.");
        global.AddTo(root);
        foreach (var version in root.Options.OfType<VersionOption>()) version.Action = new PrintVersion(stdout);
        foreach (var command in CommandCatalog.Create(stdout, stderr))
            root.Subcommands.Add(command);
        return root;
    }

    public static async Task<int> RunAsync(string[] args, TextWriter stdout, TextWriter stderr, CancellationToken ct = default)
    {
        var output = new CliOutput(stdout, stderr, CliOutput.TerminalFor(stderr));
        var global = new GlobalOptions();
        var root = BuildRoot(output.Stdout, output.Stderr, global);
        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            foreach (var error in parsed.Errors)
                stderr.WriteLine($"moe-compress: error: {error.Message}");
            stderr.WriteLine("Run 'moe-compress --help' for usage.");
            return (int)ErrorKind.Usage;
        }
        output.Configure(global.Mode(parsed, output.IsTerminal));

        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; cts.Cancel(); };
        Console.CancelKeyPress += onCancel;
        var errors = output.Stderr;
        int exitCode;
        try
        {
            exitCode = await parsed.InvokeAsync(new InvocationConfiguration { Output = output.Stdout, Error = errors, EnableDefaultExceptionHandler = false }, cts.Token);
        }
        catch (MoeCompressException ex)
        {
            errors.WriteLine($"moe-compress: error: {ex.Message}");
            exitCode = ex.ExitCode;
        }
        catch (OperationCanceledException)
        {
            errors.WriteLine("moe-compress: cancelled; no output was written.");
            exitCode = CancelledExitCode;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            errors.WriteLine($"moe-compress: error: {ex.Message}");
            exitCode = (int)ErrorKind.Io;
        }
        catch (Exception ex)
        {
            errors.WriteLine($"moe-compress: internal error ({ex.GetType().Name}): {ex.Message}");
            if (Environment.GetEnvironmentVariable("MOE_COMPRESS_DEBUG") == "1") errors.WriteLine(ex);
            exitCode = (int)ErrorKind.Internal;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
        output.Renderer.Finish(summary: exitCode == 0);
        return exitCode;
    }

    /// <summary>"moe-compress 0.1.0+commit" (the informational version of this assembly), whatever process hosts it.</summary>
    public static string Version =>
        typeof(CliApp).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
        ?? typeof(CliApp).Assembly.GetName().Version?.ToString(3) ?? "0.0.0";

    private sealed class PrintVersion(TextWriter stdout) : SynchronousCommandLineAction
    {
        public override int Invoke(ParseResult parseResult)
        {
            stdout.WriteLine($"moe-compress {Version}");
            return 0;
        }
    }
}
