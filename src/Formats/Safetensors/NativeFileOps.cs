using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace MoECompress.Formats.Safetensors;

/// <summary>
/// Linux system calls that make streaming copies cheap: in-kernel copy between files (<c>copy_file_range</c>),
/// dropping mapped pages from this process (<c>madvise(MADV_DONTNEED)</c>), early writeback
/// (<c>sync_file_range</c>) and directory fsync. Every call reports failure instead of throwing, and callers fall
/// back to portable code; on other systems every method returns false.
/// </summary>
internal static unsafe class NativeFileOps
{
    private const int MadvDontNeed = 4;
    private const uint SyncFileRangeWrite = 2;
    private const int ORdOnly = 0; // opening a directory read-only is enough to fsync it

    private static volatile bool _copyFileRangeWorks = OperatingSystem.IsLinux();

    /// <summary>Tests turn this off to exercise the portable path of in-kernel copies.</summary>
    internal static bool KernelCopyEnabled { get; set; } = true;
    private static volatile bool _madviseWorks = OperatingSystem.IsLinux();
    private static volatile bool _syncFileRangeWorks = OperatingSystem.IsLinux();
    private static volatile bool _dirSyncWorks = OperatingSystem.IsLinux();

    [DllImport("libc", EntryPoint = "copy_file_range", SetLastError = true)]
    private static extern nint CopyFileRangeNative(int fdIn, ref long offIn, int fdOut, ref long offOut, nuint len, uint flags);

    [DllImport("libc", EntryPoint = "madvise", SetLastError = true)]
    private static extern int MadviseNative(nint addr, nuint length, int advice);

    [DllImport("libc", EntryPoint = "sync_file_range", SetLastError = true)]
    private static extern int SyncFileRangeNative(int fd, long offset, long nbytes, uint flags);

    [DllImport("libc", EntryPoint = "open", SetLastError = true)]
    private static extern int OpenNative([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);

    [DllImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static extern int FsyncNative(int fd);

    [DllImport("libc", EntryPoint = "close", SetLastError = true)]
    private static extern int CloseNative(int fd);

    /// <summary>
    /// Copies exactly <paramref name="length"/> bytes from <paramref name="source"/> at <paramref name="sourceOffset"/>
    /// to <paramref name="destination"/> at <paramref name="destinationOffset"/> inside the kernel. Returns the number
    /// of bytes copied; fewer than asked (possibly 0) means the call is unsupported here and the caller must copy the
    /// rest itself.
    /// </summary>
    public static long TryCopyFileRange(SafeFileHandle source, long sourceOffset, SafeFileHandle destination,
        long destinationOffset, long length)
    {
        if (!_copyFileRangeWorks || !KernelCopyEnabled || length <= 0) return 0;
        bool addedIn = false, addedOut = false;
        long done = 0;
        try
        {
            source.DangerousAddRef(ref addedIn);
            destination.DangerousAddRef(ref addedOut);
            int fin = (int)source.DangerousGetHandle(), fout = (int)destination.DangerousGetHandle();
            while (done < length)
            {
                long inOff = sourceOffset + done, outOff = destinationOffset + done;
                nuint want = (nuint)Math.Min(length - done, 1L << 30);
                nint r = CopyFileRangeNative(fin, ref inOff, fout, ref outOff, want, 0);
                if (r > 0) { done += r; continue; }
                if (r == 0) break; // end of input: cannot happen for a validated file; let the caller handle the rest
                int errno = Marshal.GetLastPInvokeError();
                if (errno == 4 /* EINTR */) continue;
                // ENOSYS, EXDEV, EINVAL, EOPNOTSUPP, EBADF, ...: unsupported for this pair; remember the unsupported kinds.
                if (errno is 38 /* ENOSYS */ or 95 /* EOPNOTSUPP */) _copyFileRangeWorks = false;
                break;
            }
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            _copyFileRangeWorks = false;
        }
        finally
        {
            if (addedIn) source.DangerousRelease();
            if (addedOut) destination.DangerousRelease();
        }
        return done;
    }

    /// <summary>Drops the pages of a read-only file mapping range from this process (they are re-read on access).</summary>
    public static bool TryReleaseMappedPages(byte* mappingStart, long mappingLength, long offset, long length)
    {
        if (!_madviseWorks || length <= 0) return false;
        long page = Environment.SystemPageSize;
        long begin = offset / page * page;
        long end = Math.Min(mappingLength, (offset + length + page - 1) / page * page);
        if (end <= begin) return false;
        try
        {
            return MadviseNative((nint)(mappingStart + begin), (nuint)(end - begin), MadvDontNeed) == 0;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            _madviseWorks = false;
            return false;
        }
    }

    /// <summary>Starts asynchronous writeback of a written range so that a later fsync has less to wait for.</summary>
    public static bool TryStartWriteback(SafeFileHandle file, long offset, long length)
    {
        if (!_syncFileRangeWorks || length <= 0) return false;
        bool added = false;
        try
        {
            file.DangerousAddRef(ref added);
            return SyncFileRangeNative((int)file.DangerousGetHandle(), offset, length, SyncFileRangeWrite) == 0;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            _syncFileRangeWorks = false;
            return false;
        }
        finally
        {
            if (added) file.DangerousRelease();
        }
    }

    /// <summary>fsyncs a directory so that renames and file creations inside it are durable.</summary>
    public static bool TrySyncDirectory(string path)
    {
        if (!_dirSyncWorks) return false;
        try
        {
            int fd = OpenNative(path, ORdOnly);
            if (fd < 0) return false;
            try { return FsyncNative(fd) == 0; }
            finally { CloseNative(fd); }
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            _dirSyncWorks = false;
            return false;
        }
    }
}
