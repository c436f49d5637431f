namespace MoECompress.Formats.Fuzzing;

/// <summary>What one <see cref="Mutation"/> does to the bytes.</summary>
public enum MutationOp
{
    /// <summary>Flip bit <c>Value % 8</c> of the byte at the position.</summary>
    FlipBit,
    /// <summary>Replace the byte at the position by one of <see cref="InputMutator.InterestingBytes"/>.</summary>
    SetByte,
    /// <summary>Insert one of <see cref="InputMutator.Tokens"/> at the position.</summary>
    InsertToken,
    /// <summary>Delete 1–16 bytes at the position.</summary>
    DeleteRange,
    /// <summary>Insert a copy of 1–64 bytes right after themselves.</summary>
    DuplicateRange,
    /// <summary>Repeat the object member or array item around the position (<c>"a":1,</c> → <c>"a":1,"a":1,</c>): duplicate keys.</summary>
    DuplicateMember,
    /// <summary>Replace the number at or after the position by one of <see cref="InputMutator.Numbers"/>.</summary>
    ReplaceNumber,
    /// <summary>Replace the content of the string at or after the position by one of <see cref="InputMutator.Strings"/>.</summary>
    ReplaceString,
    /// <summary>Cut the input at the position.</summary>
    Truncate,
    /// <summary>Insert 10–300 opening brackets or <c>{"a":</c> at the position (deep nesting).</summary>
    Nest,
}

/// <summary>
/// One edit of an input. <see cref="Position"/> is taken modulo the current length, so any list of mutations applies
/// to any input (property-test generators and the long fuzz runner build them from plain random integers).
/// </summary>
public readonly record struct Mutation(MutationOp Op, int Position, int Length, int Value)
{
    public override string ToString() => $"{Op}@{Position}/{Length}/{Value}";
}
