using CsCheck;
using MoECompress.Formats.Fuzzing;

namespace MoECompress.Tests.Reliability;

/// <summary>The fuzz seeds (generated checkpoints of six families), made once for the class.</summary>
public sealed class FuzzCorpusFixture : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "moe-fuzz-test-" + Guid.NewGuid().ToString("N")[..10]);

    public FuzzCorpus Corpus { get; }

    public FuzzCorpusFixture() => Corpus = FuzzCorpus.Create(_root);

    public void Dispose()
    {
        Corpus.Dispose();
        if (Directory.Exists(_root)) Directory.Delete(_root, true);
    }
}

/// <summary>
/// Property: every mutation of a valid header, index or config is accepted or refused with a documented one-line
/// error — never another exception (the CLI's exit 1). CsCheck draws the seed and a list of mutations and, on a
/// failure, shrinks the list and prints the seed to rerun it. The long run (a million inputs) is
/// <c>moe-compress-bench fuzz</c>.
/// </summary>
public sealed class ParserFuzzTests(FuzzCorpusFixture fixture) : IClassFixture<FuzzCorpusFixture>
{
    private static readonly Gen<Mutation> MutationGen =
        Gen.Select(Gen.Int[0, Enum.GetValues<MutationOp>().Length - 1], Gen.Int[0, int.MaxValue], Gen.Int[0, 1023], Gen.Int[0, 1 << 20],
            (op, position, length, value) => new Mutation((MutationOp)op, position, length, value));

    [Fact]
    public void SeedsAreAcceptedUnmutated()
    {
        Assert.Equal(3, fixture.Corpus.Seeds.Select(s => s.Kind).Distinct().Count());
        foreach (var seed in fixture.Corpus.Seeds)
        {
            var outcome = ParserFuzzTarget.Run(seed, seed.Bytes);
            Assert.True(outcome.Verdict == FuzzVerdict.Accepted, $"{seed.Name}: {outcome.Error}");
        }
    }

    [Theory]
    [InlineData(FuzzInputKind.SafetensorsHeader)]
    [InlineData(FuzzInputKind.Index)]
    [InlineData(FuzzInputKind.Config)]
    public void MutatedInputsAreAcceptedOrRefusedCleanly(FuzzInputKind kind)
    {
        var seeds = fixture.Corpus.Seeds.Where(s => s.Kind == kind).ToArray();
        int rejected = 0;
        Gen.Select(Gen.Int[0, seeds.Length - 1], MutationGen.Array[1, 8], Gen.Bool)
            .Sample((seedIndex, mutations, rawPrefix) =>
            {
                var seed = seeds[seedIndex];
                var outcome = ParserFuzzTarget.Run(seed, ParserFuzzTarget.Mutate(seed, mutations, rawPrefix));
                if (outcome.Verdict == FuzzVerdict.Rejected) Interlocked.Increment(ref rejected);
                return outcome.Verdict != FuzzVerdict.Crash;
            }, iter: 1500, threads: 1, print: t => $"{seeds[t.Item1].Name}: {string.Join(' ', t.Item2)} raw={t.Item3}");
        Assert.True(rejected > 100, $"only {rejected} of 1500 mutated inputs were refused: the mutations are too weak to test anything");
    }
}
