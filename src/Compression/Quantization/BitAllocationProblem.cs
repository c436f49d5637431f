using Google.OrTools.LinearSolver;
using MoECompress.Formats.Errors;

namespace MoECompress.Compression.Quantization;

/// <summary>
/// The multiple-choice knapsack behind <see cref="BitAllocator"/>: groups (experts or layers), each with options
/// (width, cost, size); pick exactly one option per group with Σ size ≤ budget and minimal Σ cost. Options that another
/// option of the same group beats on both cost and size are removed first (safe for the integral problem too). Models are
/// built through the OR-Tools solver API (variables, constraints and coefficients one by one), never through
/// operator-overloaded expressions.
/// </summary>
internal sealed class BitAllocationProblem
{
    /// <summary>Per group, its options sorted by size ascending with cost strictly decreasing.</summary>
    private readonly Option[][] _groups;
    private readonly double _budget;
    private readonly double _costScale;

    internal readonly record struct Option(int Width, double Cost, double Size);

    internal sealed record Solution(int[] Choice, double LowerBound, BitAllocationStatus Status, string Method);

    public BitAllocationProblem(IReadOnlyList<IReadOnlyList<Option>> groups, double budget)
    {
        _budget = budget;
        _groups = new Option[groups.Count][];
        double max = 0;
        for (var g = 0; g < _groups.Length; g++)
        {
            _groups[g] = Prune(groups[g]);
            foreach (var o in _groups[g]) max = Math.Max(max, o.Cost);
        }
        _costScale = max > 0 ? max : 1;
    }

    public int Groups => _groups.Length;
    public int Variables => _groups.Sum(g => g.Length);

    /// <summary>Σ over groups of the smallest option's size.</summary>
    public double MinimumSize => _groups.Sum(g => g[0].Size);

    public Option Chosen(int group, int choice) => _groups[group][choice];

    public double SizeOf(int[] choice) => Sum(choice, o => o.Size);

    public double CostOf(int[] choice) => Sum(choice, o => o.Cost);

    private double Sum(int[] choice, Func<Option, double> f)
    {
        double s = 0;
        for (var g = 0; g < _groups.Length; g++) s += f(_groups[g][choice[g]]);
        return s;
    }

    private bool Fits(double size) => size <= _budget + 1e-12 * Math.Abs(_budget);

    /// <summary>Removes dominated options: sorted by size (then cost, then larger width first), an option is kept only when
    /// it is strictly cheaper than every smaller one. Groups hold a handful of options: insertion sort, no allocation
    /// beyond the result.</summary>
    private static Option[] Prune(IReadOnlyList<Option> options)
    {
        if (options.Count == 0) throw new ArgumentException("a group without options");
        var sorted = new Option[options.Count];
        for (var i = 0; i < sorted.Length; i++)
        {
            var o = options[i];
            var j = i - 1;
            while (j >= 0 && Before(o, sorted[j])) { sorted[j + 1] = sorted[j]; j--; }
            sorted[j + 1] = o;
        }
        var kept = 1;
        for (var i = 1; i < sorted.Length; i++)
            if (sorted[i].Cost < sorted[kept - 1].Cost) sorted[kept++] = sorted[i];
        return kept == sorted.Length ? sorted : sorted[..kept];
    }

    private static bool Before(Option a, Option b) =>
        a.Size != b.Size ? a.Size < b.Size : a.Cost != b.Cost ? a.Cost < b.Cost : a.Width > b.Width;

    /// <summary>Solves the problem; the caller has checked that the smallest options fit.</summary>
    public Solution Solve(BitAllocationSolver solver, int exactMaxVariables, double timeLimitSeconds, CancellationToken ct)
    {
        // Every group at its cheapest (largest) option fits: optimal without a solver.
        var cheapest = _groups.Select(g => g.Length - 1).ToArray();
        if (Fits(SizeOf(cheapest)))
            return new Solution(cheapest, CostOf(cheapest), BitAllocationStatus.Optimal, "cheapest widths fit the budget");

        string? note = null;
        if (solver == BitAllocationSolver.Exact || (solver == BitAllocationSolver.Auto && Variables <= exactMaxVariables))
        {
            var mip = SolveMip(timeLimitSeconds, ct, out note);
            if (mip is { Status: BitAllocationStatus.Optimal }) return mip;
            if (mip is not null)
            {
                // Time limit hit with a solution: the rounded relaxation may be better, and its bound may be tighter.
                var relaxed = SolveRelaxation(ct);
                var bound = Math.Max(mip.LowerBound, relaxed.LowerBound);
                return CostOf(relaxed.Choice) < CostOf(mip.Choice)
                    ? relaxed with { LowerBound = bound, Method = $"{mip.Method} (time limit) then {relaxed.Method}" }
                    : mip with { LowerBound = bound };
            }
        }
        ct.ThrowIfCancellationRequested();
        var lp = SolveRelaxation(ct);
        return note is null ? lp : lp with { Method = $"{note}; {lp.Method}" };
    }

    private Solution? SolveMip(double timeLimitSeconds, CancellationToken ct, out string? note)
    {
        note = null;
        var id = "SCIP";
        using var solver = Solver.CreateSolver(id) ?? Solver.CreateSolver(id = "CBC");
        if (solver is null)
        {
            note = "no MIP solver (SCIP, CBC) in this OR-Tools build";
            return null;
        }
        solver.SuppressOutput();
        solver.SetTimeLimit(Math.Max(1, (long)(timeLimitSeconds * 1000)));
        var vars = Build(solver, integral: true);
        using var parameters = new MPSolverParameters();
        parameters.SetDoubleParam(MPSolverParameters.DoubleParam.RELATIVE_MIP_GAP, 1e-9);
        Solver.ResultStatus status;
        using (ct.Register(() => solver.InterruptSolve()))
            status = solver.Solve(parameters);
        ct.ThrowIfCancellationRequested();
        if (status is not (Solver.ResultStatus.OPTIMAL or Solver.ResultStatus.FEASIBLE))
        {
            note = $"{id}: {status.ToString().ToLowerInvariant()} within {timeLimitSeconds:0.#} s";
            return null;
        }
        var choice = new int[_groups.Length];
        for (var g = 0; g < _groups.Length; g++)
        {
            var best = 0;
            for (var j = 1; j < vars[g].Length; j++)
                if (vars[g][j].SolutionValue() > vars[g][best].SolutionValue()) best = j;
            choice[g] = best;
        }
        var bound = solver.Objective().BestBound() * _costScale;
        var repaired = Repair(choice);
        Improve(choice);
        var cost = CostOf(choice);
        var optimal = status == Solver.ResultStatus.OPTIMAL && !repaired;
        return new Solution(choice, Math.Min(bound, cost), optimal ? BitAllocationStatus.Optimal : BitAllocationStatus.Feasible,
            repaired ? $"{id} (repaired to fit the budget exactly)" : id);
    }

    /// <summary>
    /// The LP relaxation in its incremental form: the LP optimum of a multiple-choice knapsack uses only the options on
    /// each group's lower convex hull (size → cost), and over the hull it equals a fractional knapsack of increments:
    /// start every group at its smallest option, y_gj ∈ [0, 1] buys the step from hull option j − 1 to j, one budget row.
    /// Efficiencies fall along each hull, so an optimum takes a group's steps in order; a basic optimum has at most one
    /// fractional step. Rounding drops it (the budget holds), then <see cref="Improve"/> spends what is left on any
    /// option, hull or not.
    /// </summary>
    private Solution SolveRelaxation(CancellationToken ct)
    {
        using var solver = Solver.CreateSolver("GLOP")
            ?? throw new MoeCompressException(ErrorKind.Internal, "OR-Tools has no GLOP linear solver in this build");
        solver.SuppressOutput();
        var hulls = new int[_groups.Length][];
        for (var g = 0; g < hulls.Length; g++) hulls[g] = LowerHull(_groups[g]);
        var scale = _budget > 0 ? 1.0 / _budget : 1.0;
        double baseCost = 0, baseSize = 0;
        foreach (var g in _groups) { baseCost += g[0].Cost; baseSize += g[0].Size; }
        var budgetRow = solver.MakeConstraint(double.NegativeInfinity, (_budget - baseSize) * scale, "budget");
        var objective = solver.Objective();
        objective.SetOffset(baseCost / _costScale);
        var steps = new Variable[_groups.Length][];
        for (var g = 0; g < _groups.Length; g++)
        {
            var hull = hulls[g];
            steps[g] = new Variable[hull.Length - 1];
            for (var j = 1; j < hull.Length; j++)
            {
                var y = solver.MakeNumVar(0.0, 1.0, "");
                steps[g][j - 1] = y;
                var from = _groups[g][hull[j - 1]];
                var to = _groups[g][hull[j]];
                budgetRow.SetCoefficient(y, (to.Size - from.Size) * scale);
                objective.SetCoefficient(y, (to.Cost - from.Cost) / _costScale);
            }
        }
        objective.SetMinimization();
        // Dual simplex without presolve: measured fastest on this one-row problem (58 × 256 experts × 5 widths).
        using var parameters = new MPSolverParameters();
        parameters.SetIntegerParam(MPSolverParameters.IntegerParam.LP_ALGORITHM, (int)MPSolverParameters.LpAlgorithmValues.DUAL);
        parameters.SetIntegerParam(MPSolverParameters.IntegerParam.PRESOLVE, (int)MPSolverParameters.PresolveValues.PRESOLVE_OFF);
        Solver.ResultStatus status;
        using (ct.Register(() => solver.InterruptSolve()))
            status = solver.Solve(parameters);
        ct.ThrowIfCancellationRequested();
        if (status != Solver.ResultStatus.OPTIMAL)
            throw new MoeCompressException(ErrorKind.Internal, $"bit allocation: GLOP ended with status {status} on a feasible problem");
        var bound = solver.Objective().Value() * _costScale;

        var choice = new int[_groups.Length];
        var fractional = 0;
        for (var g = 0; g < _groups.Length; g++)
        {
            var k = 0;
            while (k < steps[g].Length && steps[g][k].SolutionValue() >= 1 - 1e-9) k++;
            if (k < steps[g].Length && steps[g][k].SolutionValue() > 1e-9) fractional++;
            choice[g] = hulls[g][k];
        }
        Repair(choice);
        Improve(choice);
        var cost = CostOf(choice);
        var optimal = cost - bound <= 1e-9 * Math.Max(Math.Abs(cost), 1e-300);
        return new Solution(choice, Math.Min(bound, cost), optimal ? BitAllocationStatus.Optimal : BitAllocationStatus.Rounded,
            $"GLOP LP relaxation + rounding ({fractional} fractional group{(fractional == 1 ? "" : "s")})");
    }

    /// <summary>Indices of a group's options on the lower convex hull of (size, cost), in size order.</summary>
    private static int[] LowerHull(Option[] options)
    {
        var hull = new List<int>();
        for (var j = 0; j < options.Length; j++)
        {
            while (hull.Count >= 2)
            {
                var a = options[hull[^2]];
                var b = options[hull[^1]];
                var c = options[j];
                // b lies on or above the segment a–c: drop it.
                if ((b.Cost - a.Cost) * (c.Size - a.Size) >= (c.Cost - a.Cost) * (b.Size - a.Size)) hull.RemoveAt(hull.Count - 1);
                else break;
            }
            hull.Add(j);
        }
        return hull.ToArray();
    }

    /// <summary>x_gj variables, one-per-group rows, the budget row (sizes scaled by the budget) and the objective (costs
    /// scaled by the largest cost).</summary>
    private Variable[][] Build(Solver solver, bool integral)
    {
        var vars = new Variable[_groups.Length][];
        var budgetRow = solver.MakeConstraint(double.NegativeInfinity, 1.0, "budget");
        var objective = solver.Objective();
        var scale = _budget > 0 ? 1.0 / _budget : 1.0;
        for (var g = 0; g < _groups.Length; g++)
        {
            var options = _groups[g];
            var row = solver.MakeConstraint(1.0, 1.0, "");
            vars[g] = new Variable[options.Length];
            for (var j = 0; j < options.Length; j++)
            {
                var x = integral ? solver.MakeBoolVar("") : solver.MakeNumVar(0.0, 1.0, "");
                vars[g][j] = x;
                row.SetCoefficient(x, 1.0);
                budgetRow.SetCoefficient(x, options[j].Size * scale);
                objective.SetCoefficient(x, options[j].Cost / _costScale);
            }
        }
        objective.SetMinimization();
        return vars;
    }

    /// <summary>While over budget (solver tolerances), moves the group that loses least cost per unit of size freed
    /// one option down. Returns true when anything changed.</summary>
    private bool Repair(int[] choice)
    {
        var changed = false;
        var used = SizeOf(choice);
        while (!Fits(used))
        {
            int bestGroup = -1;
            double bestRatio = double.PositiveInfinity;
            for (var g = 0; g < _groups.Length; g++)
            {
                var j = choice[g];
                if (j == 0) continue;
                var a = _groups[g][j];
                var b = _groups[g][j - 1];
                var ratio = (b.Cost - a.Cost) / (a.Size - b.Size);
                if (ratio < bestRatio) (bestRatio, bestGroup) = (ratio, g);
            }
            if (bestGroup < 0) throw new MoeCompressException(ErrorKind.Internal, "bit allocation: cannot repair an over-budget solution");
            var before = _groups[bestGroup][choice[bestGroup]].Size;
            choice[bestGroup]--;
            used -= before - _groups[bestGroup][choice[bestGroup]].Size;
            changed = true;
        }
        return changed;
    }

    /// <summary>Spends the budget left over: upgrades (larger, cheaper options) in order of cost saved per unit of size,
    /// each applied when it still fits, in passes until none fits.</summary>
    private void Improve(int[] choice)
    {
        var left = _budget - SizeOf(choice);
        for (var pass = 0; pass < 32; pass++)
        {
            var upgrades = new List<(double Ratio, int Group, int From, int To)>();
            for (var g = 0; g < _groups.Length; g++)
            {
                var cur = _groups[g][choice[g]];
                for (var j = choice[g] + 1; j < _groups[g].Length; j++)
                {
                    var o = _groups[g][j];
                    var extra = o.Size - cur.Size;
                    if (extra <= left + 1e-12 * Math.Abs(_budget))
                        upgrades.Add(((cur.Cost - o.Cost) / Math.Max(extra, 1e-300), g, choice[g], j));
                }
            }
            if (upgrades.Count == 0) return;
            upgrades.Sort((a, b) => b.Ratio.CompareTo(a.Ratio));
            var applied = false;
            foreach (var (_, g, from, to) in upgrades)
            {
                if (choice[g] != from) continue;
                var extra = _groups[g][to].Size - _groups[g][from].Size;
                if (extra > left + 1e-12 * Math.Abs(_budget)) continue;
                choice[g] = to;
                left -= extra;
                applied = true;
            }
            if (!applied) return;
        }
    }
}
