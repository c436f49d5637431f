using System.Runtime.CompilerServices;

[assembly: InternalsVisibleTo("MoECompress.Tests")]
