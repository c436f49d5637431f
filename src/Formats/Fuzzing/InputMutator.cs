using System.Text;

namespace MoECompress.Formats.Fuzzing;

/// <summary>
/// Applies <see cref="Mutation"/>s to JSON-like inputs: byte-level damage (bit flips, deletions, duplications,
/// truncation) plus JSON-aware edits that reach the checks a random bit flip rarely does — repeated members
/// (duplicate keys), numbers out of range, strings with unpaired surrogate escapes or invalid UTF-8, deep nesting.
/// Deterministic: the same input and mutations give the same output.
/// </summary>
public static class InputMutator
{
    /// <summary>Bytes that break UTF-8 or JSON structure when written over another byte.</summary>
    public static IReadOnlyList<byte> InterestingBytes { get; } =
        [0x00, 0xFF, 0xC0, 0x80, 0xED, 0xF5, (byte)'"', (byte)'\\', (byte)'{', (byte)'}', (byte)'[', (byte)']', (byte)',',
         (byte)':', (byte)'-', (byte)'0', (byte)'9', (byte)'e', (byte)' ', (byte)'\n', (byte)'/'];

    /// <summary>Fragments inserted at random places.</summary>
    public static IReadOnlyList<byte[]> Tokens { get; } = new[]
    {
        "\\udc00", "\\ud800", "\\ud800\\u0041", "\\u0000", "\"", "\\", "{", "}", "[", "]", ",", ":", "null", "true",
        "false", "-1", "0", "1e400", "-1e400", "18446744073709551616", "2147483648", "1.5", "\"\"", "/*c*/", "//c\n",
        "{}", "[]", "\"__metadata__\":{},", "\"dtype\":\"F32\",", "\"shape\":[],", "\"data_offsets\":[0,0],",
    }.Select(Encoding.UTF8.GetBytes).Concat(new byte[][]
    {
        [0xC0, 0x80], [0xFF], [0xED, 0xA0, 0x80], [0xEF, 0xBB, 0xBF], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82],
    }).ToArray();

    /// <summary>Numbers written over numbers: out of every integer range, non-finite as doubles, odd forms.</summary>
    public static IReadOnlyList<byte[]> Numbers { get; } = new[]
    {
        "-1", "0", "-0", "1e400", "-1e400", "1e-400", "2147483648", "-2147483649", "4294967296", "9223372036854775807",
        "9223372036854775808", "18446744073709551616", "1.5", "0.1e1", "1E+308", "3.0", "1e2", "100000000000",
        "99999999999999999999999999999", "00", "1.", ".5", "NaN", "Infinity", "0x10",
    }.Select(Encoding.UTF8.GetBytes).ToArray();

    /// <summary>String contents written over string contents.</summary>
    public static IReadOnlyList<byte[]> Strings { get; } = new[]
    {
        "", "\\udc00", "a\\ud800", "\\ud800\\ud800", "\\u0000", "__metadata__", "../x.safetensors", "/etc/passwd",
        "model.safetensors", "F32", "BF16", "F8_E4M3", "I4", "MixtralForCausalLM", "DeepseekV3ForCausalLM", "gptq",
        "compressed-tensors", "mxfp4", "yarn", "\\\"", "é", new string('x', 300),
    }.Select(Encoding.UTF8.GetBytes).Concat(new byte[][] { [0xFF, 0xFE], [0xC3], [0xED, 0xB0, 0x80] }).ToArray();

    /// <summary>Returns a mutated copy of <paramref name="input"/> (the input is not modified).</summary>
    public static byte[] Apply(ReadOnlySpan<byte> input, IReadOnlyList<Mutation> mutations)
    {
        var bytes = new List<byte>(input.Length + 64);
        foreach (var b in input) bytes.Add(b);
        foreach (var m in mutations) Apply(bytes, m);
        return bytes.ToArray();
    }

    /// <summary><paramref name="count"/> random mutations drawn from <paramref name="random"/>.</summary>
    public static Mutation[] Random(Random random, int count)
    {
        var result = new Mutation[count];
        int ops = Enum.GetValues<MutationOp>().Length;
        for (int i = 0; i < count; i++)
            result[i] = new Mutation((MutationOp)random.Next(ops), random.Next(), random.Next(1024), random.Next(1 << 20));
        return result;
    }

    private static void Apply(List<byte> b, Mutation m)
    {
        int n = b.Count;
        int pos = n == 0 ? 0 : (int)((uint)m.Position % (uint)n);
        switch (m.Op)
        {
            case MutationOp.FlipBit when n > 0:
                b[pos] ^= (byte)(1 << (m.Value & 7));
                break;
            case MutationOp.SetByte when n > 0:
                b[pos] = InterestingBytes[m.Value % InterestingBytes.Count];
                break;
            case MutationOp.InsertToken:
                b.InsertRange(Math.Min(pos + (m.Length & 1), n), Tokens[m.Value % Tokens.Count]);
                break;
            case MutationOp.DeleteRange when n > 0:
                b.RemoveRange(pos, Math.Min(1 + m.Length % 16, n - pos));
                break;
            case MutationOp.DuplicateRange when n > 0:
            {
                int len = Math.Min(1 + m.Length % 64, n - pos);
                b.InsertRange(pos + len, b.GetRange(pos, len));
                break;
            }
            case MutationOp.DuplicateMember when n > 0:
                DuplicateMember(b, pos);
                break;
            case MutationOp.ReplaceNumber:
                ReplaceNumber(b, pos, Numbers[m.Value % Numbers.Count]);
                break;
            case MutationOp.ReplaceString:
                ReplaceString(b, pos, Strings[m.Value % Strings.Count]);
                break;
            case MutationOp.Truncate:
                b.RemoveRange(pos, n - pos);
                break;
            case MutationOp.Nest:
            {
                int depth = 10 + m.Length % 290;
                var open = (m.Value & 1) == 0 ? "["u8.ToArray() : "{\"a\":"u8.ToArray();
                var fill = new List<byte>(depth * open.Length);
                for (int i = 0; i < depth; i++) fill.AddRange(open);
                b.InsertRange(pos, fill);
                break;
            }
        }
    }

    /// <summary>Finds the member around <paramref name="pos"/> (from the previous ',', '{' or '[' to the next ',') and repeats it.</summary>
    private static void DuplicateMember(List<byte> b, int pos)
    {
        int start = pos;
        while (start > 0 && b[start - 1] is not ((byte)',' or (byte)'{' or (byte)'[')) start--;
        int end = pos;
        int depth = 0;
        while (end < b.Count)
        {
            byte c = b[end];
            if (c is (byte)'{' or (byte)'[') depth++;
            else if (c is (byte)'}' or (byte)']') { if (depth == 0) break; depth--; }
            else if (c == (byte)',' && depth == 0) break;
            end++;
        }
        if (end <= start) return;
        var member = b.GetRange(start, end - start);
        member.Add((byte)',');
        b.InsertRange(start, member);
    }

    private static void ReplaceNumber(List<byte> b, int pos, byte[] number)
    {
        int start = pos;
        while (start < b.Count && !IsNumberByte(b[start])) start++;
        if (start >= b.Count) return;
        int end = start;
        while (end < b.Count && IsNumberByte(b[end])) end++;
        b.RemoveRange(start, end - start);
        b.InsertRange(start, number);
    }

    private static bool IsNumberByte(byte c) => c is (>= (byte)'0' and <= (byte)'9') or (byte)'-' or (byte)'+' or (byte)'.' or (byte)'e' or (byte)'E';

    private static void ReplaceString(List<byte> b, int pos, byte[] content)
    {
        int open = b.IndexOf((byte)'"', Math.Min(pos, b.Count));
        if (open < 0) return;
        int close = open + 1;
        while (close < b.Count && b[close] != (byte)'"') close += b[close] == (byte)'\\' ? 2 : 1;
        if (close >= b.Count) return;
        b.RemoveRange(open + 1, close - open - 1);
        b.InsertRange(open + 1, content);
    }
}
