namespace MoECompress.Formats.Fuzzing;

/// <summary>How a parser answered one input.</summary>
public enum FuzzVerdict
{
    /// <summary>The input was accepted.</summary>
    Accepted,
    /// <summary>Refused with a documented error (a <see cref="Errors.MoeCompressException"/> other than Internal, one line).</summary>
    Rejected,
    /// <summary>A bug: any other exception, an Internal error, or a message that is not one line.</summary>
    Crash,
}

/// <summary>The verdict, and for a crash what was thrown and a key that groups crashes with one cause.</summary>
public sealed record FuzzOutcome(FuzzVerdict Verdict, Exception? Error = null)
{
    /// <summary>Exception type plus the innermost project frame: crashes with one cause share it.</summary>
    public string? CrashKey
    {
        get
        {
            if (Verdict != FuzzVerdict.Crash || Error is null) return null;
            var frame = Error.StackTrace?.Split('\n').Select(l => l.Trim())
                .FirstOrDefault(l => l.Contains("MoECompress.", StringComparison.Ordinal)) ?? "";
            int cut = frame.IndexOf(" in ", StringComparison.Ordinal);
            return $"{Error.GetType().Name} {(cut > 0 ? frame[..cut] : frame)}";
        }
    }
}
