using Spectre.Console;

namespace MoECompress.Cli.Rendering;

/// <summary>
/// Spectre.Console progress bars on an interactive terminal: one bar per stage (description, bar, percentage, time
/// left, time spent), started on the first update and stopped by <see cref="Stop"/> before anything else is written.
/// A stage without a known fraction shows an indeterminate bar. Not thread-safe on its own: <see cref="ProgressRenderer"/>
/// serialises the calls.
/// </summary>
internal sealed class ProgressBars(IAnsiConsole console)
{
    private const double Scale = 1000;
    private readonly Dictionary<string, ProgressTask> _tasks = [];
    private ProgressTask? _current;
    private Task? _display;
    private TaskCompletionSource? _stop;
    private ProgressContext? _context;

    /// <summary>Shows progress of <paramref name="stage"/>: a new bar when the stage is new (the previous bar completes).</summary>
    public void Stage(string stage, string message, double? fraction)
    {
        var task = TaskFor(stage);
        task.Description = Describe(stage, message);
        if (fraction is double f)
        {
            task.IsIndeterminate = false;
            task.Value = Math.Max(task.Value, f * Scale);
        }
    }

    /// <summary>Shows a plain message on the bar of <paramref name="stage"/>.</summary>
    public void Message(string stage, string message) => TaskFor(stage).Description = Describe(stage, message);

    /// <summary>Writes a line below the bars (after stopping them).</summary>
    public void WriteLine(string text)
    {
        Stop();
        console.MarkupLine(Markup.Escape(text));
    }

    /// <summary>Completes every bar and ends the live display; the next update starts a new one.</summary>
    public void Stop()
    {
        if (_display is null) return;
        foreach (var task in _tasks.Values) Complete(task);
        _stop!.TrySetResult();
        _display.GetAwaiter().GetResult();
        _display = null;
        _context = null;
        _tasks.Clear();
        _current = null;
    }

    private ProgressTask TaskFor(string stage)
    {
        if (_tasks.TryGetValue(stage, out var existing) && existing == _current) return existing;
        EnsureStarted();
        if (_current is not null) Complete(_current);
        var task = _context!.AddTask(Markup.Escape(stage), maxValue: Scale);
        task.IsIndeterminate = true;
        _tasks[stage] = task;
        _current = task;
        return task;
    }

    private void EnsureStarted()
    {
        if (_display is not null) return;
        var ready = new ManualResetEventSlim();
        _stop = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var stop = _stop;
        _display = Task.Run(() => console.Progress()
            .AutoClear(false)
            .HideCompleted(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(),
                new RemainingTimeColumn(), new ElapsedTimeColumn(), new SpinnerColumn())
            .StartAsync(async ctx =>
            {
                _context = ctx;
                ready.Set();
                await stop.Task;
                ctx.Refresh();
            }));
        while (!ready.Wait(50))
            if (_display.IsCompleted)
            {
                var failed = _display;
                _display = null;
                failed.GetAwaiter().GetResult();
                throw new InvalidOperationException("the progress display ended before it started");
            }
    }

    private static void Complete(ProgressTask task)
    {
        task.IsIndeterminate = false;
        task.Value = task.MaxValue;
        task.StopTask();
    }

    private static string Describe(string stage, string message)
    {
        var text = message.StartsWith(stage, StringComparison.Ordinal) ? message : $"{stage}: {message}";
        if (text.Length > 56) text = text[..55] + "…";
        return Markup.Escape(text);
    }
}
