namespace MoECompress.Benchmarks;

/// <summary>Memory figures of the current process, from /proc/self/status (Linux).</summary>
internal static class ProcessStats
{
    /// <summary>Peak resident set size (VmHWM) in bytes, or -1 where /proc is not available.</summary>
    public static long PeakRssBytes() => Field("VmHWM:");

    /// <summary>Current resident set size (VmRSS) in bytes, or -1 where /proc is not available.</summary>
    public static long RssBytes() => Field("VmRSS:");

    /// <summary>Resets the peak (VmHWM) to the current resident size (Linux: writes 5 to /proc/self/clear_refs); false where that is not possible.</summary>
    public static bool ResetPeak()
    {
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private static long Field(string name)
    {
        const string path = "/proc/self/status";
        if (!File.Exists(path)) return -1;
        foreach (var line in File.ReadLines(path))
        {
            if (!line.StartsWith(name, StringComparison.Ordinal)) continue;
            return long.Parse(line[name.Length..].Trim().Split(' ')[0]) * 1024;
        }
        return -1;
    }
}
