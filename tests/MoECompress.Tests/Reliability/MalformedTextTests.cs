using System.Buffers.Binary;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Input;
using MoECompress.Formats.Synthetic;
using MoECompress.Tests.Cli;
using MoECompress.Tests.Safetensors;

namespace MoECompress.Tests.Reliability;

/// <summary>Good checkpoints of the six layouts the fuzzer started from, generated once for the class.</summary>
public sealed class SixFamiliesFixture : IDisposable
{
    public static readonly string[] Families = ["mixtral", "deepseek-v3", "qwen3-moe-fused", "gpt-oss", "granitemoe", "mixtral-single"];

    public string Root { get; } = Path.Combine(Path.GetTempPath(), "moe-malformed-" + Guid.NewGuid().ToString("N")[..10]);

    public SixFamiliesFixture()
    {
        foreach (var family in Families)
        {
            bool single = family.EndsWith("-single", StringComparison.Ordinal);
            SyntheticCheckpoint.Write(single ? family[..^"-single".Length] : family, Good(family),
                new SyntheticOptions { Seed = 5, ShardBytes = single ? long.MaxValue : 150_000 });
        }
    }

    public string Good(string family) => Path.Combine(Root, "good-" + family);

    public void Dispose()
    {
        if (Directory.Exists(Root)) Directory.Delete(Root, true);
    }
}

/// <summary>
/// The classes of malformed text and odd files that the first fuzzing campaign turned into internal errors or hangs
/// (issue 13), each through the real command line (`inspect` and `reshard`): exit 3 (checkpoint) or 4 (config), one
/// line naming the file and what is wrong, nothing left behind, and never a wait on a named pipe.
/// </summary>
public sealed class MalformedTextTests(SixFamiliesFixture fixture) : IClassFixture<SixFamiliesFixture>
{
    private const string EmbedKey = "\"model.embed_tokens.weight\"";

    /// <summary>A damage: what it does to a copy of a good checkpoint, the exit code, the file named, and a fragment of the problem.</summary>
    private sealed record Damage(Func<string, string> Apply, int Exit, string Fragment);

    private static readonly Dictionary<string, Damage> Damages = new()
    {
        ["header-key-invalid-utf8"] = new(dir => EditHeader(FirstShard(dir), b => Replace(b, "embed_tokens", [.. "embed_"u8, 0xFF, .. "okens"u8])), 3, "not valid UTF-8"),
        ["header-key-lone-surrogate"] = new(dir => EditHeader(FirstShard(dir), b => Replace(b, EmbedKey, "\"model.embed_tokens.weigh\\udc00\""u8)), 3, "\\udc00"),
        ["metadata-invalid-utf8"] = new(dir => EditHeader(FirstShard(dir), b => Replace(b, "\"pt\"", [(byte)'"', (byte)'p', 0xC3, (byte)'"'])), 3, "not valid UTF-8"),
        ["metadata-lone-surrogate"] = new(dir => EditHeader(FirstShard(dir), b => Replace(b, "\"pt\"", "\"\\ud800x\""u8)), 3, "\\ud800"),
        ["header-nested-too-deep"] = new(dir => EditHeader(FirstShard(dir), b => Replace(b, "\"dtype\"", Encoding.UTF8.GetBytes($"\"x\":{new string('[', 40)}{new string(']', 40)},\"dtype\""))), 3, "depth"),
        ["index-invalid-utf8"] = new(dir => EditFile(Index(dir), b => Replace(b, "embed_tokens", [.. "embed_"u8, 0xFF, .. "okens"u8])), 3, "not valid UTF-8"),
        ["index-lone-surrogate"] = new(dir => EditFile(Index(dir), b => Replace(b, EmbedKey, "\"\\udc00\""u8)), 3, "\\udc00"),
        ["index-duplicate-key"] = new(dir => EditFile(Index(dir), b => Replace(b, "\"weight_map\"", "\"metadata\": {}, \"weight_map\""u8)), 3, "duplicate key 'metadata'"),
        ["config-invalid-utf8"] = new(dir => EditFile(Config(dir), b => Replace(b, "\"architectures\"", [.. "\"archi"u8, 0xE2, 0x82, .. "tectures\""u8])), 4, "not valid UTF-8"),
        ["config-lone-surrogate"] = new(dir => EditFile(Config(dir), b => Replace(b, "\"architectures\"", "\"torch_dtype_\\udfff\": 1, \"architectures\""u8)), 4, "\\udfff"),
        ["config-duplicate-model_type"] = new(dir => DuplicateConfigKey(dir, "model_type"), 4, "duplicate key 'model_type'"),
        ["config-duplicate-rms_norm_eps"] = new(dir => DuplicateConfigKey(dir, "rms_norm_eps"), 4, "duplicate key 'rms_norm_eps'"),
        ["config-duplicate-torch_dtype"] = new(dir => DuplicateConfigKey(dir, "torch_dtype"), 4, "duplicate key 'torch_dtype'"),
        ["config-number-out-of-range"] = new(dir => EditFile(Config(dir), b => Replace(b, "\"architectures\"", "\"rope_theta_x\": 1e400, \"architectures\""u8)), 4, "out of range"),
        ["config-nested-too-deep"] = new(dir => EditFile(Config(dir), b => Replace(b, "\"architectures\"", Encoding.UTF8.GetBytes($"\"x\": {new string('[', 40)}{new string(']', 40)}, \"architectures\""))), 4, "nested deeper than the 32 levels"),
        ["shard-is-a-directory"] = new(dir => ReplaceByDirectory(FirstShard(dir)), 3, "is a directory"),
        ["config-is-a-directory"] = new(dir => ReplaceByDirectory(Config(dir)), 4, "is a directory"),
    };

    public static TheoryData<string, string, string> Cases()
    {
        var data = new TheoryData<string, string, string>();
        foreach (var command in new[] { "inspect", "reshard" })
        {
            foreach (var damage in Damages.Keys)
            {
                if (damage.StartsWith("index-", StringComparison.Ordinal) || damage.StartsWith("shard-", StringComparison.Ordinal))
                    data.Add(command, "mixtral", damage);
                else
                    foreach (var family in SixFamiliesFixture.Families)
                        if (!(damage == "config-duplicate-torch_dtype" && family == "gpt-oss")) // its config says "dtype"
                            data.Add(command, family, damage);
            }
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void MalformedInputGivesItsExitCodeAndOneLine(string command, string family, string damage)
    {
        var d = Damages[damage];
        var dir = Copy(family, $"{command}-{family}-{damage}");
        string file = d.Apply(dir);
        var line = RunFailing(command, dir, d.Exit);
        Assert.Contains(dir, line);
        Assert.Contains(Path.GetFileName(file), line); // a shard is named by the index that lists it
        Assert.Contains(d.Fragment, line);
    }

    [Fact]
    public void DeepSeekConfigWithFirstKDenseReplaceTwiceIsRefused()
    {
        var dir = Copy("deepseek-v3", "dup-first-k");
        var config = DuplicateConfigKey(dir, "first_k_dense_replace");
        var line = RunFailing("inspect", dir, 4);
        Assert.Contains(config, line);
        Assert.Contains("duplicate key 'first_k_dense_replace'", line);
    }

    [Theory]
    [InlineData("shard", 3)]
    [InlineData("index", 3)]
    [InlineData("config", 4)]
    public void NamedPipeInsteadOfAFileIsRefusedAtOnce(string which, int exit)
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS()) return; // named pipes in the file system are a Unix thing
        foreach (var command in new[] { "inspect", "reshard" })
        {
            var dir = Copy("mixtral", $"fifo-{which}-{command}");
            string path = which switch { "shard" => FirstShard(dir), "index" => Index(dir), _ => Config(dir) };
            File.Delete(path);
            Assert.Equal(0, MakeFifo(path, 0x1A4));
            Assert.Equal(InputFileKind.Fifo, InputFile.KindOf(path));
            var clock = Stopwatch.StartNew();
            var line = RunFailing(command, dir, exit);
            clock.Stop();
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(1), $"took {clock.Elapsed}");
            Assert.Contains(dir, line);
            Assert.Contains(Path.GetFileName(path), line);
            Assert.Contains("named pipe (FIFO)", line);
        }
    }

    [Fact]
    public void AFileThatYieldsMoreBytesThanItsSizeIsRefused()
    {
        // /proc files report size 0 and then produce text: the reader sees the length change under it.
        const string path = "/proc/self/status";
        if (!OperatingSystem.IsLinux() || !File.Exists(path)) return;
        var e = Assert.ThrowsAny<MoeCompressException>(() => InputFile.ReadAllBytes(path, "config.json", ErrorKind.InvalidConfig));
        Assert.Equal(ErrorKind.InvalidConfig, e.Kind);
        Assert.Contains("changed size while being read", e.Message);
        Assert.StartsWith(path + ":", e.Message);
    }

    [Fact]
    public void DevicesAreNotReadAsFiles()
    {
        if (!File.Exists("/dev/zero")) return;
        Assert.Equal(InputFileKind.CharacterDevice, InputFile.KindOf("/dev/zero"));
        var e = Assert.ThrowsAny<MoeCompressException>(() => InputFile.ReadAllBytes("/dev/zero", "index", ErrorKind.InvalidCheckpoint));
        Assert.Equal("/dev/zero: the index is a character device, not a regular file", e.Message);
    }

    [DllImport("libc", EntryPoint = "mkfifo", SetLastError = true)]
    private static extern int MakeFifo([MarshalAs(UnmanagedType.LPUTF8Str)] string path, uint mode);

    private string Copy(string family, string name)
    {
        var dir = Path.Combine(fixture.Root, name);
        CheckpointCorruptor.CopyDirectory(fixture.Good(family), dir);
        return dir;
    }

    /// <summary>Runs the command; checks the exit code, one error line, nothing on stdout and nothing written.</summary>
    private string RunFailing(string command, string dir, int exit)
    {
        var output = dir + "-out";
        var before = Directory.GetFileSystemEntries(fixture.Root).Order().ToArray();
        var r = command == "inspect" ? CliRunner.Run("inspect", dir) : CliRunner.Run("reshard", dir, output);
        Assert.True(r.ExitCode == exit, $"exit {r.ExitCode} (expected {exit}), stderr: {r.Stderr}");
        Assert.Empty(r.Stdout);
        var line = Assert.Single(r.StderrLines);
        Assert.StartsWith("moe-compress: error: ", line);
        Assert.False(Directory.Exists(output));
        Assert.Equal(before, Directory.GetFileSystemEntries(fixture.Root).Order().ToArray());
        return line;
    }

    private static string FirstShard(string dir) => CheckpointCorruptor.FirstWeightFile(dir);

    private static string Index(string dir) => Path.Combine(dir, "model.safetensors.index.json");

    private static string Config(string dir) => Path.Combine(dir, "config.json");

    private static string DuplicateConfigKey(string dir, string key) => EditFile(Config(dir), b =>
    {
        var text = Encoding.UTF8.GetString(b);
        int at = text.IndexOf($"\"{key}\"", StringComparison.Ordinal);
        Assert.True(at >= 0, $"config has no {key}");
        int end = text.IndexOfAny([',', '\n', '}'], text.IndexOf(':', at));
        return Encoding.UTF8.GetBytes(text[..end] + ", " + text[at..end] + text[end..]);
    });

    private static string ReplaceByDirectory(string path)
    {
        File.Delete(path);
        Directory.CreateDirectory(path);
        return path;
    }

    private static string EditFile(string path, Func<byte[], byte[]> edit)
    {
        File.WriteAllBytes(path, edit(File.ReadAllBytes(path)));
        return path;
    }

    /// <summary>Edits a shard's JSON header and rewrites the length prefix (data offsets are relative, so they stay right).</summary>
    private static string EditHeader(string shard, Func<byte[], byte[]> edit)
    {
        var bytes = File.ReadAllBytes(shard);
        int n = (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        var header = edit(bytes[8..(8 + n)]);
        File.WriteAllBytes(shard, RawSafetensors.FromHeaderBytes(header, bytes[(8 + n)..], pad: false));
        return shard;
    }

    private static byte[] Replace(byte[] text, string find, ReadOnlySpan<byte> with)
    {
        int at = text.AsSpan().IndexOf(Encoding.UTF8.GetBytes(find));
        Assert.True(at >= 0, $"'{find}' not found");
        return [.. text.AsSpan(0, at), .. with, .. text.AsSpan(at + Encoding.UTF8.GetByteCount(find))];
    }
}
