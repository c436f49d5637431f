namespace MoECompress.Benchmarks;

/// <summary>Memory figures of the current process, from /proc/self/status (Linux).</summary>
internal static class ProcessStats
{
    /// <summary>Peak resident set size (VmHWM) in bytes, or -1 where /proc is not available.</summary>
    public static long PeakRssBytes()
    {
        const string path = "/proc/self/status";
        if (!File.Exists(path)) return -1;
        foreach (var line in File.ReadLines(path))
        {
            if (!line.StartsWith("VmHWM:", StringComparison.Ordinal)) continue;
            var kb = line["VmHWM:".Length..].Trim().Split(' ')[0];
            return long.Parse(kb) * 1024;
        }
        return -1;
    }
}
