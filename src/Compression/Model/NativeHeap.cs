using System.Runtime.InteropServices;

namespace MoECompress.Compression.Model;

/// <summary>
/// Gives freed native memory back to the OS. libtorch allocates tensors below glibc's (adaptive, up to 32 MB) mmap
/// threshold from the malloc heap — one expert's projection is such a tensor — and glibc keeps freed heap pages in the
/// process, so without this the resident size creeps up layer after layer although nothing is held.
/// <c>malloc_trim(0)</c> returns every free page of every arena. Linux with glibc only; a no-op elsewhere.
/// </summary>
internal static class NativeHeap
{
    private static volatile bool _works = OperatingSystem.IsLinux();

    [DllImport("libc", EntryPoint = "malloc_trim")]
    private static extern int MallocTrim(nuint pad);

    /// <summary>Returns free heap pages to the OS; call after a big group of tensors (a decoder layer) was freed.</summary>
    public static void Trim()
    {
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
