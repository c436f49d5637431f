using MoECompress.Cli;
using MoECompress.Compression;

if (NativeAllocator.Configure(args) is int childExit) return childExit;
return await CliApp.RunAsync(args, Console.Out, Console.Error);
