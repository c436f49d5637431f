using System.Buffers.Binary;
using MoECompress.Formats.Errors;
using MoECompress.Formats.Families;
using MoECompress.Formats.Inspection;
using MoECompress.Formats.Safetensors;

namespace MoECompress.Formats.Fuzzing;

/// <summary>
/// Feeds one input to the parser of its kind, in process, and classifies the answer. The rule being tested: every
/// input is either accepted or refused with a documented, one-line <see cref="MoeCompressException"/>; anything else
/// (another exception type, <see cref="ErrorKind.Internal"/>, a multi-line message) is a crash.
/// </summary>
public static class ParserFuzzTarget
{
    private static readonly ModelCheckpointOptions HeadersOnly = new() { ValidateRouterValues = false };

    /// <summary>Runs <paramref name="input"/> (a mutated copy of <paramref name="seed"/>'s bytes) through its parser.</summary>
    public static FuzzOutcome Run(FuzzSeed seed, byte[] input)
    {
        try
        {
            switch (seed.Kind)
            {
                case FuzzInputKind.SafetensorsHeader:
                    ParseHeader(seed, input);
                    break;
                case FuzzInputKind.Index:
                    SafetensorsIndex.Parse(seed.Path, input);
                    break;
                case FuzzInputKind.Config:
                {
                    var config = ConfigReader.Parse(input, seed.Path);
                    using var checkpoint = ModelCheckpoint.FromSource(config, seed.Path, seed.Tensors!, HeadersOnly);
                    CheckpointInspector.Inspect(checkpoint);
                    break;
                }
            }
            return new FuzzOutcome(FuzzVerdict.Accepted);
        }
        catch (MoeCompressException e) when (e.Kind != ErrorKind.Internal && IsOneLine(e.Message))
        {
            return new FuzzOutcome(FuzzVerdict.Rejected, e);
        }
        catch (Exception e)
        {
            return new FuzzOutcome(FuzzVerdict.Crash, e);
        }
    }

    /// <summary>
    /// The input stands for the start of a file whose data section is <see cref="FuzzSeed.DataLength"/> bytes (not
    /// materialised). When the input keeps the seed's shape — prefix and header — the prefix is what the file says.
    /// </summary>
    private static void ParseHeader(FuzzSeed seed, byte[] input)
    {
        // A cut inside the prefix stands for a file that short (the reader reads a full prefix whenever there is one).
        long fileLength = input.Length < 8 ? input.Length : input.Length + seed.DataLength;
        long n = SafetensorsHeader.ReadHeaderLength(seed.Path, input.AsSpan(0, Math.Min(8, input.Length)), fileLength);
        // A header longer than the bytes we hold runs into the (zero) data section, as it would in the real file.
        byte[] json = n <= input.Length - 8 ? input[8..(int)(8 + n)] : [.. input.AsSpan(8), .. new byte[n - (input.Length - 8)]];
        SafetensorsHeader.Read(seed.Path, json, fileLength - 8 - n);
    }

    /// <summary>
    /// For header seeds: mutates only the JSON and rewrites the length prefix to match (most mutations should reach
    /// the JSON checks rather than stop at the prefix); other kinds are mutated as they are.
    /// </summary>
    public static byte[] Mutate(FuzzSeed seed, IReadOnlyList<Mutation> mutations, bool rawPrefix)
    {
        if (seed.Kind != FuzzInputKind.SafetensorsHeader || rawPrefix || seed.Bytes.Length < 8)
            return InputMutator.Apply(seed.Bytes, mutations);
        var json = InputMutator.Apply(seed.Bytes.AsSpan(8), mutations);
        var result = new byte[8 + json.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(result, (ulong)json.Length);
        json.CopyTo(result, 8);
        return result;
    }

    private static bool IsOneLine(string message) => message.Length > 0 && message.IndexOfAny(['\n', '\r']) < 0;
}
