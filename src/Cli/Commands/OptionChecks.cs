using MoECompress.Formats.Errors;

namespace MoECompress.Cli.Commands;

/// <summary>Checks of option values that the parser cannot express; failures are usage errors naming the option.</summary>
internal static class OptionChecks
{
    public static void Positive(int value, string option)
    {
        if (value <= 0) throw Usage(option, "must be a positive number");
    }

    public static MoeCompressException Usage(string option, string problem) => new(ErrorKind.Usage, $"{option}: {problem}");
}
