namespace MoECompress.Compression.Training;

/// <summary>A domain's text as one token stream: every chunk as [BOS, tokens…], concatenated in file order.</summary>
public sealed record DomainTokens(string Domain, int[] Tokens, int Documents);
