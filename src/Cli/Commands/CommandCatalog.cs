using System.CommandLine;

namespace MoECompress.Cli.Commands;

/// <summary>Every subcommand of moe-compress, registered in one place.</summary>
internal static class CommandCatalog
{
    public static IEnumerable<Command> Create(TextWriter stdout, TextWriter stderr)
    {
        yield return DemoCommand.Create(stdout, stderr);
        yield return InspectCommand.Create(stdout);
        yield return CalibrateCommand.Create(stdout, stderr);
        yield return PruneCommand.Create(stdout, stderr);
        yield return MergeCommand.Create(stdout, stderr);
        yield return QuantizeCommand.Create(stdout, stderr);
        yield return CompressCommand.Create(stdout, stderr);
        yield return SubstituteCommand.Create(stdout, stderr);
        yield return SkipPlanCommand.Create(stdout, stderr);
        yield return DequantizeCommand.Create(stdout, stderr);
        yield return ProfilesCommand.Create(stdout);
        yield return EvalCommand.Create(stdout, stderr);
        yield return ReshardCommand.Create(stdout, stderr);
        yield return SynthesizeCommand.Create(stdout, stderr);
        yield return TrainReferenceCommand.Create(stdout, stderr);
    }
}
