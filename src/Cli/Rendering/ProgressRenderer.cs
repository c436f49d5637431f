using System.Diagnostics;
using MoECompress.Compression.Reporting;

namespace MoECompress.Cli.Rendering;

/// <summary>
/// Renders the progress of one command invocation on stderr in the chosen <see cref="ProgressMode"/>. Structured
/// <see cref="ProgressUpdate"/>s define stages (or the steps of a multi-step run such as <c>demo</c>); plain messages
/// belong to whatever runs. In <see cref="ProgressMode.Lines"/> a line is printed when the stage (or step) changes
/// and at most once per <see cref="LineInterval"/> per stage, only after the stage's progress moved by a quarter;
/// inside a multi-step run (the demo) only a heartbeat, after <see cref="StepHeartbeat"/> of silence and then at
/// doubling intervals (30 s, 60 s, 120 s … into the step), so a step adds a line only when it runs long; plain messages
/// at most once per <see cref="LineInterval"/>. <see cref="Finish"/> ends the bars and prints the compact summary (time per stage).
/// Thread-safe: library calls report from worker threads.
/// </summary>
internal sealed class ProgressRenderer
{
    public static readonly TimeSpan LineInterval = TimeSpan.FromSeconds(5);
    public static readonly TimeSpan StepHeartbeat = TimeSpan.FromSeconds(30);

    private readonly object _gate = new();
    private readonly TextWriter _stderr;
    private readonly Func<DateTime> _now;
    private readonly StageClock _clock = new();
    private readonly Stopwatch _sinceLine = new();
    private readonly Stopwatch _sinceMessage = new();
    private readonly ProgressBars? _bars;
    private ProgressUpdate? _step;
    private readonly Stopwatch _inStep = new();
    private double _lastFraction = double.NaN;

    private readonly TimeSpan _lineInterval;
    private readonly TimeSpan _stepHeartbeat;

    public ProgressRenderer(ProgressMode mode, TextWriter stderr, ProgressBars? bars = null, Func<DateTime>? now = null,
        TimeSpan? lineInterval = null, TimeSpan? stepHeartbeat = null)
    {
        Mode = mode;
        _lineInterval = lineInterval ?? LineInterval;
        _stepHeartbeat = stepHeartbeat ?? StepHeartbeat;
        _stderr = stderr;
        _now = now ?? (() => DateTime.Now);
        _bars = mode == ProgressMode.Bars ? bars ?? throw new ArgumentNullException(nameof(bars)) : null;
    }

    public ProgressMode Mode { get; }

    /// <summary>Renders a structured update.</summary>
    public void Report(ProgressUpdate update)
    {
        lock (_gate)
        {
            if (update.Step is not null)
            {
                _step = update;
                _inStep.Restart();
                _clock.Enter(update.Stage);
                _lastFraction = double.NaN;
                switch (Mode)
                {
                    case ProgressMode.Lines or ProgressMode.Verbose: Line(update.Message); break;
                    case ProgressMode.Bars: _bars!.Stage(StepKey(update), update.Message, null); break;
                }
                return;
            }
            if (_step is { } step)
            {
                switch (Mode)
                {
                    case ProgressMode.Verbose: Line(update.Message); break;
                    case ProgressMode.Lines when HeartbeatDue(): Line($"{step.Stage}: {update.Message}{Percent(update)}"); break;
                    case ProgressMode.Bars: _bars!.Stage(StepKey(step), $"{step.Message} · {update.Message}", update.Fraction); break;
                }
                return;
            }
            bool changed = _clock.Enter(update.Stage);
            if (changed) _lastFraction = double.NaN;
            switch (Mode)
            {
                case ProgressMode.Verbose: Line(update.Message); break;
                case ProgressMode.Lines:
                    bool moved = update.Fraction is not double f || double.IsNaN(_lastFraction) || f - _lastFraction >= 0.25 - 1e-9 || f >= 1 && _lastFraction < 1;
                    if (changed || (_sinceLine.Elapsed >= _lineInterval && moved))
                    {
                        Line($"{update.Stage}: {update.Message}{Percent(update)}");
                        if (update.Fraction is double done) _lastFraction = done;
                    }
                    break;
                case ProgressMode.Bars: _bars!.Stage(update.Stage, update.Message, update.Fraction); break;
            }
        }
    }

    /// <summary>Renders a plain message.</summary>
    public void Report(string message)
    {
        lock (_gate)
        {
            switch (Mode)
            {
                case ProgressMode.Verbose: Line(message); break;
                case ProgressMode.Lines when _step is { } step:
                    if (HeartbeatDue()) Line($"{step.Stage}: {message}");
                    break;
                case ProgressMode.Lines:
                    if (!_sinceMessage.IsRunning || _sinceMessage.Elapsed >= _lineInterval)
                    {
                        Line(message);
                        _sinceMessage.Restart();
                    }
                    break;
                case ProgressMode.Bars: _bars!.Message(_step is { } s ? StepKey(s) : _clock.Current ?? "prepare", message); break;
            }
        }
    }

    /// <summary>Stops the bars (if shown) so that other output can be written below them.</summary>
    public void Pause()
    {
        lock (_gate) _bars?.Stop();
    }

    /// <summary>
    /// Closes the last stage, stops the bars and, with <paramref name="summary"/>, prints the compact summary (not when
    /// quiet or when no stage ran).
    /// </summary>
    public void Finish(bool summary = true)
    {
        lock (_gate)
        {
            _clock.Close();
            _bars?.Stop();
            if (summary && Mode != ProgressMode.Quiet && _clock.Summary() is { } text)
            {
                if (Mode == ProgressMode.Bars) _bars!.WriteLine(text);
                else Line(text);
            }
        }
    }

    /// <summary>Inside a step: silent for the heartbeat interval and for at least half the time the step has run.</summary>
    private bool HeartbeatDue() => _sinceLine.Elapsed >= _stepHeartbeat && _sinceLine.Elapsed >= _inStep.Elapsed / 2;

    private static string StepKey(ProgressUpdate step) => $"[{step.Step}/{step.Steps}] {step.Stage}";

    private static string Percent(ProgressUpdate update) => update.Fraction is double f ? $" ({100 * f:0}%)" : "";

    private void Line(string text)
    {
        _stderr.WriteLine($"[{_now():HH:mm:ss}] {text}");
        _sinceLine.Restart();
    }
}
