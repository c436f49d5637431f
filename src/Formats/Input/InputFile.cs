using System.Runtime.InteropServices;
using MoECompress.Formats.Errors;

namespace MoECompress.Formats.Input;

/// <summary>
/// Safe reading of input files: the kind of a path is checked <b>before</b> it is opened (opening a named pipe for
/// reading blocks until a writer appears, a character device never ends), sizes are bounded, and a file that changes
/// size while it is read is refused instead of parsed half-old, half-new. Every failure is one
/// <see cref="MoeCompressException"/> line naming the file, of the kind the caller says the input belongs to.
/// </summary>
public static unsafe class InputFile
{
    // The .NET runtime's own native shim (shipped with every .NET on Unix) exposes stat(2) with a fixed,
    // platform-independent struct: { int32 Flags; int32 Mode; ... }. Mode's S_IFMT bits use the Linux values.
    private const int StatBufferBytes = 512;
    private const int ModeOffset = 4;
    private const int TypeMask = 0xF000, TypeFifo = 0x1000, TypeCharacter = 0x2000, TypeDirectory = 0x4000,
        TypeBlock = 0x6000, TypeRegular = 0x8000, TypeSocket = 0xC000;

    private static volatile bool _nativeStatWorks = !OperatingSystem.IsWindows();

    [DllImport("libSystem.Native", EntryPoint = "SystemNative_Stat", SetLastError = true)]
    private static extern int NativeStat([MarshalAs(UnmanagedType.LPUTF8Str)] string path, byte* output);

    /// <summary>What <paramref name="path"/> names, following symbolic links. Never opens the path.</summary>
    public static InputFileKind KindOf(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (_nativeStatWorks)
        {
            try
            {
                byte* buffer = stackalloc byte[StatBufferBytes];
                if (NativeStat(path, buffer) != 0)
                    return File.Exists(path) || Directory.Exists(path) ? InputFileKind.Other : InputFileKind.Missing;
                return (*(int*)(buffer + ModeOffset) & TypeMask) switch
                {
                    TypeRegular => InputFileKind.Regular,
                    TypeDirectory => InputFileKind.Directory,
                    TypeFifo => InputFileKind.Fifo,
                    TypeCharacter => InputFileKind.CharacterDevice,
                    TypeBlock => InputFileKind.BlockDevice,
                    TypeSocket => InputFileKind.Socket,
                    _ => InputFileKind.Other,
                };
            }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
            {
                _nativeStatWorks = false;
            }
        }
        // Portable fallback (Windows): attributes tell directories and devices apart from files.
        if (Directory.Exists(path)) return InputFileKind.Directory;
        if (!File.Exists(path)) return InputFileKind.Missing;
        return (File.GetAttributes(path) & FileAttributes.Device) != 0 ? InputFileKind.CharacterDevice : InputFileKind.Regular;
    }

    /// <summary>True when <paramref name="path"/> is a regular file (or a link to one).</summary>
    public static bool IsRegularFile(string path) => KindOf(path) == InputFileKind.Regular;

    /// <summary>
    /// Throws unless <paramref name="path"/> is a regular file. <paramref name="what"/> names the input in the message
    /// ("config.json", "shard", "index"); <paramref name="kind"/> is the error's class (its exit code).
    /// </summary>
    public static void RequireRegularFile(string path, string what, ErrorKind kind)
    {
        var k = KindOf(path);
        if (k != InputFileKind.Regular) throw NotRegular(path, what, k, kind);
    }

    /// <summary>The error for a path of the wrong kind: "PATH: the shard is a named pipe (FIFO), not a regular file".</summary>
    public static MoeCompressException NotRegular(string path, string what, InputFileKind found, ErrorKind kind) =>
        new(kind, $"{path}: the {what} {Describe(found)}");

    /// <summary>"is a named pipe (FIFO), not a regular file", ... for messages of readers with error types of their own.</summary>
    public static string Describe(InputFileKind kind) => kind switch
    {
        InputFileKind.Regular => "is a regular file",
        InputFileKind.Missing => "does not exist",
        InputFileKind.Directory => "is a directory, not a file",
        InputFileKind.Fifo => "is a named pipe (FIFO), not a regular file",
        InputFileKind.CharacterDevice => "is a character device, not a regular file",
        InputFileKind.BlockDevice => "is a block device, not a regular file",
        InputFileKind.Socket => "is a socket, not a regular file",
        _ => "is not a regular file",
    };

    /// <summary>
    /// Reads a whole regular file of at most <paramref name="maxBytes"/> bytes. Refuses (with <paramref name="kind"/>)
    /// a path that is missing, not a regular file, too large, or whose size changes while it is read.
    /// </summary>
    public static byte[] ReadAllBytes(string path, string what, ErrorKind kind, long maxBytes = 1L << 31)
    {
        RequireRegularFile(path, what, kind);
        try
        {
            using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete);
            long length = RandomAccess.GetLength(handle);
            if (length > maxBytes || length > Array.MaxLength)
                throw new MoeCompressException(kind,
                    $"{path}: the {what} is {length} bytes, more than the {Math.Min(maxBytes, Array.MaxLength)} accepted");
            var bytes = new byte[length];
            int done = 0;
            while (done < bytes.Length)
            {
                int n = RandomAccess.Read(handle, bytes.AsSpan(done), done);
                if (n <= 0) throw ChangedSize(path, what, kind, length, done);
                done += n;
            }
            Span<byte> probe = stackalloc byte[1];
            long now = RandomAccess.GetLength(handle);
            if (now != length || RandomAccess.Read(handle, probe, length) > 0)
                throw ChangedSize(path, what, kind, length, Math.Max(now, length + 1));
            return bytes;
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new MoeCompressException(kind, $"{path}: the {what} was removed while being opened", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new MoeCompressException(ErrorKind.Io, $"{path}: cannot read the {what}: {OneLine(e.Message)}", e);
        }
    }

    /// <summary>The error for a file whose length changed between opening and the end of reading.</summary>
    public static MoeCompressException ChangedSize(string path, string what, ErrorKind kind, long before, long after) =>
        new(kind, $"{path}: the {what} changed size while being read ({before} bytes when opened, {after} later); " +
                  "is another program writing it?");

    private static string OneLine(string s) => s.Replace('\r', ' ').Replace('\n', ' ');
}
