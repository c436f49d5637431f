using MoECompress.Formats.Errors;
using MoECompress.Formats.Safetensors;

namespace MoECompress.Cli.Commands;

/// <summary>Checks of option values that the parser cannot express; failures are usage errors naming the option.</summary>
internal static class OptionChecks
{
    public static void Positive(int value, string option)
    {
        if (value <= 0) throw Usage(option, "must be a positive number");
    }

    /// <summary>An enum value by its lower-case name (dashes ignored); unknown names are a usage error listing the choices.</summary>
    public static T ParseEnum<T>(string text, string option) where T : struct, Enum =>
        Enum.TryParse<T>(text.Replace("-", ""), ignoreCase: true, out var v) && Enum.IsDefined(v) && !int.TryParse(text, out _)
            ? v
            : throw Usage(option, $"'{text}' is not one of {string.Join(", ", Enum.GetNames<T>().Select(n => n.ToLowerInvariant()))}");

    /// <summary>bf16, f16 or f32 (and their long names) as a safetensors dtype.</summary>
    public static SafetensorsDType ParseFloatDType(string text, string option) => text.ToLowerInvariant() switch
    {
        "bf16" or "bfloat16" => SafetensorsDType.BF16,
        "f16" or "fp16" or "float16" => SafetensorsDType.F16,
        "f32" or "fp32" or "float32" => SafetensorsDType.F32,
        var other => throw Usage(option, $"'{other}' is not one of bf16, f16, f32"),
    };

    public static MoeCompressException Usage(string option, string problem) => new(ErrorKind.Usage, $"{option}: {problem}");
}
