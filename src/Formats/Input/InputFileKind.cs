namespace MoECompress.Formats.Input;

/// <summary>What a path names on disk (after following symbolic links).</summary>
public enum InputFileKind
{
    /// <summary>Nothing exists at the path (or a symbolic link points nowhere).</summary>
    Missing,
    /// <summary>A regular file: the only kind a reader opens.</summary>
    Regular,
    /// <summary>A directory.</summary>
    Directory,
    /// <summary>A named pipe (FIFO): opening it for reading blocks until a writer appears.</summary>
    Fifo,
    /// <summary>A character device (<c>/dev/zero</c>, a terminal).</summary>
    CharacterDevice,
    /// <summary>A block device (a disk).</summary>
    BlockDevice,
    /// <summary>A Unix domain socket.</summary>
    Socket,
    /// <summary>Anything else the operating system reports.</summary>
    Other,
}
