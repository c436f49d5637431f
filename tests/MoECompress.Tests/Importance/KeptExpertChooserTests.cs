using MoECompress.Compression.Importance;
using MoECompress.Formats.Errors;

namespace MoECompress.Tests.Importance;

/// <summary>Group balance and protection of the plain top-score decision.</summary>
public sealed class KeptExpertChooserTests
{
    [Fact]
    public void GroupsKeepTheSameCountEvenWhenTheBestExpertsShareAGroup()
    {
        // 8 experts in 2 groups (0-3, 4-7); the four best are all in group 0.
        double[] scores = [0.9, 0.8, 0.7, 0.6, 0.1, 0.4, 0.2, 0.3];
        Assert.Equal([0, 1, 2, 3], KeptExpertChooser.TopByScore(0, scores, 4, 1, []));
        Assert.Equal([0, 1, 5, 7], KeptExpertChooser.TopByScore(0, scores, 4, 2, []));
        Assert.Equal(1, KeptExpertChooser.GroupOf(5, 8, 2));
    }

    [Fact]
    public void TooManyProtectedExpertsAreInfeasibleWithAClearMessage()
    {
        var ex = Assert.Throws<MoeCompressException>(() => KeptExpertChooser.TopByScore(3, new double[8], 2, 1, [1, 4, 6]));
        Assert.Equal(ErrorKind.Infeasible, ex.Kind);
        Assert.Contains("layer 3", ex.Message);
        Assert.Contains("1, 4, 6", ex.Message);
        Assert.Contains("--allow-super-experts", ex.Message);

        var group = Assert.Throws<MoeCompressException>(() => KeptExpertChooser.TopByScore(1, new double[8], 4, 4, [0, 1]));
        Assert.Equal(ErrorKind.Infeasible, group.Kind);
        Assert.Contains("group 0", group.Message);
    }

    [Fact]
    public void VerifyCatchesABrokenDecision()
    {
        KeptExpertChooser.Verify(0, 8, [0, 1, 4, 5], 4, 2, [5]);
        Assert.Equal(ErrorKind.Internal, Assert.Throws<MoeCompressException>(() => KeptExpertChooser.Verify(0, 8, [0, 1, 2, 5], 4, 2, [])).Kind);
        Assert.Equal(ErrorKind.Internal, Assert.Throws<MoeCompressException>(() => KeptExpertChooser.Verify(0, 8, [0, 1, 4, 6], 4, 2, [5])).Kind);
        Assert.Equal(ErrorKind.Internal, Assert.Throws<MoeCompressException>(() => KeptExpertChooser.Verify(0, 8, [0, 1, 4], 4, 1, [])).Kind);
    }
}
