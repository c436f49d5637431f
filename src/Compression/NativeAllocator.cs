using System.Diagnostics;
using System.Runtime.InteropServices;

namespace MoECompress.Compression;

/// <summary>
/// libtorch allocates large short-lived buffers on every layer and step. With glibc malloc these are mapped and
/// unmapped each time (page faults, kernel time, RSS creeping up); tcmalloc keeps them. On Linux the CLI (and any
/// program that calls <see cref="Configure"/> first thing in <c>Main</c>: a build pipeline, the benchmarks) therefore
/// re-executes itself once with <c>LD_PRELOAD</c>=libtcmalloc_minimal when that library is installed (Debian:
/// libtcmalloc-minimal4), and otherwise pins glibc's mmap threshold at 128 KiB (as MALLOC_MMAP_THRESHOLD_=131072 would), which was
/// measured to keep RSS flat with glibc, at some cost in speed.
/// Set <c>MOE_COMPRESS_ALLOCATOR=system</c> to disable both.
/// </summary>
public static class NativeAllocator
{
    private const string Marker = "MOE_COMPRESS_ALLOCATOR_SET";
    private static readonly string[] TcmallocCandidates =
    [
        "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
        "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4",
        "/usr/lib64/libtcmalloc_minimal.so.4",
        "/usr/lib/libtcmalloc_minimal.so.4",
    ];

    /// <summary>
    /// Call first thing in <c>Main</c>, before any tensor is allocated. Returns the child's exit code when the process
    /// re-executed itself under tcmalloc (return it from <c>Main</c>), otherwise null (carry on in this process).
    /// </summary>
    public static int? Configure(string[] args)
    {
        ArgumentNullException.ThrowIfNull(args);
        if (!OperatingSystem.IsLinux()) return null;
        if (Environment.GetEnvironmentVariable("MOE_COMPRESS_ALLOCATOR") == "system") return null;
        if (Environment.GetEnvironmentVariable(Marker) == "1") return null;
        var preload = Environment.GetEnvironmentVariable("LD_PRELOAD") ?? "";
        if (preload.Contains("tcmalloc", StringComparison.Ordinal)) return null;

        var tcmalloc = TcmallocCandidates.FirstOrDefault(File.Exists);
        var self = Environment.ProcessPath;
        if (tcmalloc is not null && self is not null)
        {
            var psi = new ProcessStartInfo(self) { UseShellExecute = false };
            // Run through the dotnet host (`dotnet app.dll`, `dotnet run`): the entry assembly comes first.
            if (Path.GetFileNameWithoutExtension(self) == "dotnet")
            {
                if (System.Reflection.Assembly.GetEntryAssembly()?.Location is not { Length: > 0 } entry) { PinGlibcMmapThreshold(); return null; }
                psi.ArgumentList.Add(entry);
            }
            foreach (var a in args) psi.ArgumentList.Add(a);
            psi.Environment["LD_PRELOAD"] = preload.Length == 0 ? tcmalloc : tcmalloc + ":" + preload;
            psi.Environment[Marker] = "1";
            try
            {
                using var child = Process.Start(psi);
                if (child is not null)
                {
                    // Ctrl+C reaches the child too (same process group); the parent just waits for it.
                    Console.CancelKeyPress += (_, e) => e.Cancel = true;
                    child.WaitForExit();
                    return child.ExitCode;
                }
            }
            catch (System.ComponentModel.Win32Exception)
            {
                // fall through to the in-process setting
            }
        }

        PinGlibcMmapThreshold();
        return null;
    }

    private static void PinGlibcMmapThreshold()
    {
        try
        {
            const int M_MMAP_THRESHOLD = -3;
            mallopt(M_MMAP_THRESHOLD, 128 * 1024);
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException)
        {
            // not glibc (musl): nothing to tune
        }
    }

    [DllImport("libc", EntryPoint = "mallopt")]
    private static extern int mallopt(int param, int value);
}
