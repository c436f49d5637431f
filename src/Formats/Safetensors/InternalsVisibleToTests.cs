using System.Runtime.CompilerServices;

// The safetensors tests switch the Linux in-kernel copy off to exercise the portable path (NativeFileOps).
[assembly: InternalsVisibleTo("MoECompress.Tests")]
