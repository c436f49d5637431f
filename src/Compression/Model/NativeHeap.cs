using System.Runtime.InteropServices;

namespace MoECompress.Compression.Model;

/// <summary>
/// Gives freed native memory back to the OS. libtorch allocates tensors below glibc's (adaptive, up to 32 MB) mmap
/// threshold from the malloc heap — one expert's projection is such a tensor — and glibc keeps freed heap pages in the
/// process, so without this the resident size creeps up layer after layer although nothing is held.
/// <c>malloc_trim(0)</c> returns every free page of every arena. Under tcmalloc (the CLI re-executes itself with it,
/// see <see cref="NativeAllocator"/>) freed spans stay in tcmalloc's page heap and are released only gradually, so
/// GPTQ's 822 MB matrices of one Mixtral down_proj solve stayed resident after it; there
/// <c>MallocExtension_ReleaseFreeMemory</c> returns them. Linux only; a no-op elsewhere.
/// </summary>
internal static class NativeHeap
{
    private static volatile bool _works = OperatingSystem.IsLinux();
    private static volatile bool _tcmallocWorks = OperatingSystem.IsLinux()
        && (Environment.GetEnvironmentVariable("LD_PRELOAD") ?? "").Contains("libtcmalloc", StringComparison.Ordinal);

    [DllImport("libc", EntryPoint = "malloc_trim")]
    private static extern int MallocTrim(nuint pad);

    // Resolves to the preloaded library (already in the process, so no second copy is loaded).
    [DllImport("libtcmalloc_minimal.so.4", EntryPoint = "MallocExtension_ReleaseFreeMemory")]
    private static extern void TcmallocReleaseFreeMemory();

    private static long _allocatedAtLastCollection;

    /// <summary>Managed allocations after which <see cref="Trim"/> also collects the managed heap.</summary>
    public const long ManagedCollectionBytes = 512L << 20;

    /// <summary>
    /// Returns free heap pages to the OS; call after a big group of tensors (a decoder layer, a GPTQ solve) was freed.
    /// When more than <see cref="ManagedCollectionBytes"/> were allocated on the managed heap since the last such
    /// collection it is also collected and decommitted (<see cref="GCCollectionMode.Aggressive"/>): GPTQ and the packed
    /// writers make hundreds of MB of short-lived large arrays per Mixtral projection, which the GC would otherwise
    /// keep committed until its own large-object budget runs out — gigabytes of resident memory the budget does not see.
    /// </summary>
    public static void Trim()
    {
        var allocated = GC.GetTotalAllocatedBytes();
        if (allocated - Interlocked.Read(ref _allocatedAtLastCollection) > ManagedCollectionBytes)
        {
            GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
            Interlocked.Exchange(ref _allocatedAtLastCollection, GC.GetTotalAllocatedBytes());
        }
        if (_tcmallocWorks)
        {
            try
            {
                TcmallocReleaseFreeMemory();
            }
            catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
            {
                _tcmallocWorks = false; // another tcmalloc build: nothing to release this way
            }
        }
        if (!_works) return;
        try
        {
            MallocTrim(0);
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            _works = false; // not glibc (e.g. musl): nothing to trim this way
        }
    }
}
