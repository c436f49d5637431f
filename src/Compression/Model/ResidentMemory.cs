using System.Diagnostics;
using System.Globalization;
using MoECompress.Compression.Pipeline;

namespace MoECompress.Compression.Model;

/// <summary>This process's resident memory, for progress lines that let a user compare it with <c>--max-memory</c>.</summary>
internal static class ResidentMemory
{
    /// <summary>"resident 9.61 GB, peak 11.24 GB" (the OS's resident set size and its high-water mark).</summary>
    public static string Describe()
    {
        using var self = Process.GetCurrentProcess();
        return string.Create(CultureInfo.InvariantCulture,
            $"resident {MemoryPlan.Format(self.WorkingSet64)}, peak {MemoryPlan.Format(self.PeakWorkingSet64)}");
    }
}
