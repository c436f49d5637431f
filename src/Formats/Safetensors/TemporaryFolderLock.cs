namespace MoECompress.Formats.Safetensors;

/// <summary>
/// The lock file beside a writer's temporary folder (<c>.NAME.tmp-XXXXXXXX.lock</c> next to
/// <c>.NAME.tmp-XXXXXXXX</c>), held open exclusively for as long as the writer lives and deleted when it is done. A
/// writer that is killed (SIGKILL, power loss) cannot delete it, but the operating system drops its hold; the next
/// writer for the same destination therefore tells a dead writer's leftovers (lock file not held) from a live one's
/// (held) and deletes only the former (<see cref="CleanStale"/>).
/// </summary>
internal sealed class TemporaryFolderLock : IDisposable
{
    /// <summary>Appended to the temporary folder's path.</summary>
    public const string Suffix = ".lock";

    private FileStream? _held;

    /// <summary>Full path of the lock file.</summary>
    public string Path { get; }

    private TemporaryFolderLock(string path, FileStream held)
    {
        Path = path;
        _held = held;
    }

    /// <summary>Creates and holds the lock file of <paramref name="temporaryFolder"/> (before the folder is created).</summary>
    public static TemporaryFolderLock Acquire(string temporaryFolder)
    {
        string path = temporaryFolder + Suffix;
        return new TemporaryFolderLock(path,
            new FileStream(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.DeleteOnClose));
    }

    /// <summary>
    /// Like <see cref="Acquire"/> for a folder with a fixed name (a resumable <c>.partial</c> folder): a lock file left by
    /// a killed writer is taken over; one held by a running writer is an Io error naming the folder.
    /// </summary>
    public static TemporaryFolderLock AcquireOrTakeOver(string temporaryFolder)
    {
        string path = temporaryFolder + Suffix;
        for (var attempt = 0; ; attempt++)
        {
            try
            {
                return Acquire(temporaryFolder);
            }
            catch (IOException) when (File.Exists(path) && attempt == 0)
            {
                try
                {
                    // Opening it exclusively succeeds only when no live writer holds it: a killed writer's leftover.
                    using var stale = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.DeleteOnClose);
                }
                catch (IOException e)
                {
                    throw new Errors.MoeCompressException(Errors.ErrorKind.Io,
                        $"{temporaryFolder}: another running process is writing this output now ({SafetensorsFile.OneLine(e.Message)})", e);
                }
            }
        }
    }

    /// <summary>
    /// Deletes the temporary folders of <paramref name="destinationName"/> in <paramref name="parent"/> whose writer no
    /// longer runs (their lock file exists and nobody holds it), and orphaned lock files. Folders without a lock file
    /// (written by another tool or an older version) are left alone. Returns the folders deleted.
    /// </summary>
    public static IReadOnlyList<string> CleanStale(string parent, string destinationName)
    {
        var removed = new List<string>();
        if (!Directory.Exists(parent)) return removed;
        foreach (var lockPath in Directory.EnumerateFiles(parent, $".{destinationName}.tmp-*{Suffix}"))
        {
            FileStream probe;
            try
            {
                probe = new FileStream(lockPath, FileMode.Open, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.DeleteOnClose);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                continue; // a running writer holds it (or it vanished meanwhile)
            }
            using (probe)
            {
                string folder = lockPath[..^Suffix.Length];
                try
                {
                    if (Directory.Exists(folder))
                    {
                        Directory.Delete(folder, recursive: true);
                        removed.Add(folder);
                    }
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    // Could not delete it now; a later writer tries again.
                }
            }
        }
        return removed;
    }

    /// <summary>Releases and deletes the lock file.</summary>
    public void Dispose()
    {
        _held?.Dispose();
        _held = null;
    }
}
