using System.Reflection;
using System.Reflection.Emit;
using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;

namespace MoECompress.Tests.Reliability;

/// <summary>
/// No code of ours converts a number to a <c>TorchSharp.Scalar</c> (or a <c>Tensor</c>) implicitly. Such a temporary is
/// unreachable as soon as TorchSharp has read its native handle, so a garbage collection started by another thread while
/// the native call runs can finalize it — free the native Scalar — before libtorch reads it. That race crashed long
/// runs ("Unknown scalar type", "Scalar::toFloat ... Expected false to be true") at real model widths, after thousands
/// of calls. Scalars must be created explicitly (<c>using var s = x.ToScalar();</c>) so they live until the call is
/// done. The same holds for TorchSharp methods that make such a temporary themselves (<c>a + b</c> and <c>a.add(b)</c>
/// pass an implicit alpha, <c>square()</c> an implicit exponent). The test walks the IL of every method of the shipped
/// assemblies and names each offending method.
/// </summary>
public sealed class ImplicitScalarTests
{
    private static readonly Dictionary<short, OpCode> OpCodesByValue = typeof(OpCodes)
        .GetFields(BindingFlags.Public | BindingFlags.Static)
        .Select(f => (OpCode)f.GetValue(null)!)
        .ToDictionary(o => o.Value);

    [Theory]
    [InlineData("MoECompress.Compression.dll")]
    [InlineData("moe-compress.dll")]
    [InlineData("MoECompress.Formats.dll")]
    public void No_method_converts_a_number_to_a_scalar_implicitly(string assembly)
    {
        var path = Path.Combine(AppContext.BaseDirectory, assembly);
        var offenders = FindImplicitConversions(path);
        Assert.True(offenders.Count == 0,
            $"{assembly}: implicit TorchSharp Scalar/Tensor conversions (create them with `using var s = x.ToScalar();`) in:\n  "
            + string.Join("\n  ", offenders));
    }

    [Fact]
    public void The_scanner_finds_an_implicit_conversion()
    {
        // This test assembly has one on purpose (below): the scanner must see it, or the test above proves nothing.
        var offenders = FindImplicitConversions(typeof(ImplicitScalarTests).Assembly.Location);
        Assert.Contains(offenders, o => o.Contains(nameof(ImplicitOnPurpose)));
    }

    [Fact]
    public void The_scanner_finds_an_implicit_alpha_inside_torchsharp()
    {
        // `a + b` of two tensors passes TorchSharp's own implicit alpha = 1 Scalar to libtorch.
        var offenders = FindImplicitConversions(typeof(ImplicitScalarTests).Assembly.Location);
        Assert.Contains(offenders, o => o.Contains(nameof(ImplicitAlphaOnPurpose)));
    }

    private static TorchSharp.Scalar ImplicitOnPurpose() => 2.5f;

    private static TorchSharp.torch.Tensor ImplicitAlphaOnPurpose(TorchSharp.torch.Tensor a, TorchSharp.torch.Tensor b) => a + b;

    private static List<string> FindImplicitConversions(string path)
    {
        using var stream = File.OpenRead(path);
        using var pe = new PEReader(stream);
        var md = pe.GetMetadataReader();
        var pdbPath = Path.ChangeExtension(path, ".pdb");
        using var pdbProvider = File.Exists(pdbPath) ? MetadataReaderProvider.FromPortablePdbStream(File.OpenRead(pdbPath)) : null;
        var pdb = pdbProvider?.GetMetadataReader();
        var module = Assembly.LoadFrom(path).ManifestModule;
        var found = new List<string>();
        foreach (var typeHandle in md.TypeDefinitions)
        {
            var type = md.GetTypeDefinition(typeHandle);
            foreach (var methodHandle in type.GetMethods())
            {
                var method = md.GetMethodDefinition(methodHandle);
                if (method.RelativeVirtualAddress == 0) continue;
                var il = pe.GetMethodBody(method.RelativeVirtualAddress).GetILBytes();
                if (il is null) continue;
                var offsets = ImplicitConversionOffsets(module, il);
                if (offsets.Count == 0) continue;
                found.Add($"{TypeName(md, type)}.{md.GetString(method.Name)}{Lines(pdb, methodHandle, offsets)}");
            }
        }
        return found;
    }

    private static List<int> ImplicitConversionOffsets(Module module, byte[] il)
    {
        var offsets = new List<int>();
        for (int i = 0; i < il.Length;)
        {
            int start = i;
            short value = il[i] == 0xFE ? (short)(0xFE00 | il[i + 1]) : il[i];
            i += il[i] == 0xFE ? 2 : 1;
            var op = OpCodesByValue[value];
            if (op.OperandType == OperandType.InlineMethod && MakesScalar(module, BitConverter.ToInt32(il, i)))
                offsets.Add(start);
            i += OperandSize(op, il, i);
        }
        return offsets;
    }

    /// <summary>" (File.cs:12, 40)" from the portable PDB's sequence points, or "" without one.</summary>
    private static string Lines(MetadataReader? pdb, MethodDefinitionHandle method, List<int> offsets)
    {
        if (pdb is null) return "";
        var points = pdb.GetMethodDebugInformation(method).GetSequencePoints().Where(p => !p.IsHidden).ToList();
        if (points.Count == 0) return "";
        var lines = offsets
            .Select(o => points.LastOrDefault(p => p.Offset <= o))
            .Where(p => !p.Document.IsNil)
            .Select(p => (File: Path.GetFileName(pdb.GetString(pdb.GetDocument(p.Document).Name)), p.StartLine))
            .Distinct().ToList();
        return lines.Count == 0 ? "" : " (" + string.Join(", ", lines.Select(l => $"{l.File}:{l.StartLine}")) + ")";
    }

    /// <summary>
    /// A call that turns a number into a Scalar (or Tensor) that nobody holds: TorchSharp's implicit conversions, and its
    /// operators with a number operand (<c>t * 2f</c>, <c>1 - t</c>), which convert inside TorchSharp.
    /// </summary>
    private static bool MakesScalar(Module module, int token)
    {
        MethodBase? method;
        try { method = module.ResolveMethod(token); }
        catch (ArgumentException) { return false; } // a member of a generic type: not TorchSharp's
        if (method?.DeclaringType?.Assembly.GetName().Name != "TorchSharp") return false;
        return IsImplicitConversion(method) || method.Name.StartsWith("op_", StringComparison.Ordinal) && method.GetParameters().Any(p => p.ParameterType.IsPrimitive)
            || ConvertsInside(method, depth: 0);
    }

    private static bool IsImplicitConversion(MethodBase method) =>
        method.Name == "op_Implicit" && method is MethodInfo m && m.ReturnType.Name is "Scalar" or "Tensor" && m.GetParameters()[0].ParameterType.IsPrimitive;

    // Inside TorchSharp only number → Scalar conversions count: its comparisons convert a bool to a Tensor on a path that
    // never reaches libtorch.
    private static bool IsImplicitScalar(MethodBase method) =>
        method.Name == "op_Implicit" && method is MethodInfo m && m.ReturnType.Name == "Scalar" && m.GetParameters()[0].ParameterType.IsPrimitive;

    private static readonly Dictionary<MethodBase, bool> Inside = [];

    /// <summary>
    /// A TorchSharp method that makes such a temporary itself, or through the TorchSharp methods it calls (a few levels
    /// deep): <c>a.add(b)</c> and <c>a + b</c> pass an implicit alpha of 1, <c>square()</c> an exponent of 2.
    /// </summary>
    private static bool ConvertsInside(MethodBase method, int depth)
    {
        lock (Inside)
        {
            if (Inside.TryGetValue(method, out var known)) return known;
            Inside[method] = false; // recursion guard
        }
        bool found = false;
        byte[]? il = null;
        try { il = method.GetMethodBody()?.GetILAsByteArray(); }
        catch (Exception e) when (e is InvalidOperationException or NotSupportedException) { }
        for (int i = 0; il is not null && i < il.Length && !found;)
        {
            short value = il[i] == 0xFE ? (short)(0xFE00 | il[i + 1]) : il[i];
            i += il[i] == 0xFE ? 2 : 1;
            var op = OpCodesByValue[value];
            if (op.OperandType == OperandType.InlineMethod)
            {
                MethodBase? callee = null;
                try { callee = method.Module.ResolveMethod(BitConverter.ToInt32(il, i), method.DeclaringType?.GetGenericArguments(), null); }
                catch (ArgumentException) { }
                if (callee?.DeclaringType?.Assembly == method.DeclaringType?.Assembly && callee is not null)
                    found = IsImplicitScalar(callee) || depth < 3 && ConvertsInside(callee, depth + 1);
            }
            i += OperandSize(op, il, i);
        }
        lock (Inside) Inside[method] = found;
        return found;
    }

    private static int OperandSize(OpCode op, byte[] il, int at) => op.OperandType switch
    {
        OperandType.InlineNone => 0,
        OperandType.ShortInlineBrTarget or OperandType.ShortInlineI or OperandType.ShortInlineVar => 1,
        OperandType.InlineVar => 2,
        OperandType.InlineI8 or OperandType.InlineR => 8,
        OperandType.InlineSwitch => 4 + 4 * BitConverter.ToInt32(il, at),
        _ => 4,
    };

    private static string TypeName(MetadataReader md, TypeDefinition type)
    {
        string name = md.GetString(type.Name);
        var declaring = type.GetDeclaringType();
        return declaring.IsNil ? $"{md.GetString(type.Namespace)}.{name}" : $"{TypeName(md, md.GetTypeDefinition(declaring))}/{name}";
    }
}
