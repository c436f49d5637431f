using System.Diagnostics;
using System.Globalization;

namespace MoECompress.Cli.Rendering;

/// <summary>Which stage runs now and how long each finished stage took — the compact summary at the end of a command.</summary>
internal sealed class StageClock
{
    private readonly List<(string Stage, TimeSpan Took)> _finished = [];
    private readonly Stopwatch _total = Stopwatch.StartNew();
    private readonly Stopwatch _current = new();

    /// <summary>The stage running now, or null.</summary>
    public string? Current { get; private set; }

    /// <summary>Time spent in <see cref="Current"/>.</summary>
    public TimeSpan CurrentElapsed => _current.Elapsed;

    /// <summary>Starts <paramref name="stage"/>; true when it differs from the current one (the previous one is finished).</summary>
    public bool Enter(string stage)
    {
        if (stage == Current) return false;
        Close();
        Current = stage;
        _current.Restart();
        return true;
    }

    /// <summary>Finishes the current stage.</summary>
    public void Close()
    {
        if (Current is not null) _finished.Add((Current, _current.Elapsed));
        Current = null;
        _current.Reset();
    }

    /// <summary>Stages finished so far, in order.</summary>
    public IReadOnlyList<(string Stage, TimeSpan Took)> Finished => _finished;

    /// <summary>"done in 12.3 s: calibrate 2.1 s, evaluate 8.0 s, ..." (stages of the same name added up); null when no stage ran.</summary>
    public string? Summary()
    {
        if (_finished.Count == 0) return null;
        var c = CultureInfo.InvariantCulture;
        var byStage = _finished.GroupBy(f => f.Stage).Select(g => $"{g.Key} {g.Sum(f => f.Took.TotalSeconds).ToString("0.0", c)} s");
        return $"done in {_total.Elapsed.TotalSeconds.ToString("0.0", c)} s: {string.Join(", ", byStage)}";
    }
}
