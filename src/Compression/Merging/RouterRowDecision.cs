using System.Globalization;
using MoECompress.Compression.Surgery;

namespace MoECompress.Compression.Merging;

/// <summary>The router-row rule of one layer and why.</summary>
/// <param name="Rule">The rule used for the merged experts.</param>
/// <param name="Basis">"measured", "forced", or a note for layers that were not measured.</param>
/// <param name="RepresentativeError">Relative block error with representative rows, when measured.</param>
/// <param name="WeightedError">The same with frequency-weighted rows, when measured.</param>
/// <param name="Tokens">Tokens measured.</param>
internal sealed record RouterRowDecision(RouterRowRule Rule, string Basis, double? RepresentativeError, double? WeightedError, long Tokens)
{
    /// <summary>The rule with the lower measured error in <paramref name="layer"/> (representative on ties or without a measurement).</summary>
    public static RouterRowDecision Measured(RouterRowMeasurement probe, int layer)
    {
        var rep = probe.Error(layer, RouterRowRule.Representative);
        var wtd = probe.Error(layer, RouterRowRule.Weighted);
        var rule = wtd is { } w && rep is { } r && w < r ? RouterRowRule.Weighted : RouterRowRule.Representative;
        return new RouterRowDecision(rule, "measured", rep, wtd, probe.Tokens(layer));
    }

    /// <summary>The rule <paramref name="choice"/> forces (representative or weighted; never called with auto).</summary>
    public static RouterRowDecision Forced(RouterRowChoice choice) =>
        new(choice == RouterRowChoice.Weighted ? RouterRowRule.Weighted : RouterRowRule.Representative, "forced", null, null, 0);

    /// <summary>One progress line.</summary>
    public string Describe(int layer) => string.Create(CultureInfo.InvariantCulture,
        $"layer {layer}: router-row error representative {RepresentativeError:0.######}, weighted {WeightedError:0.######} → {MergeReport.Name(Rule)}");
}
