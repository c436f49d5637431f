namespace MoECompress.Tests.Reliability;

/// <summary>
/// Tests that change libtorch's process-wide thread count (`train-reference --threads 1`) and tests that need it to
/// stay put between two runs (the determinism tests: a float sum split over a different number of threads rounds
/// differently) are in this collection, so xunit never runs them at the same time.
/// </summary>
[CollectionDefinition(nameof(LibtorchThreadCount))]
public sealed class LibtorchThreadCount;
