/**
 * Every failure the runtime reports on purpose is a RuntimeError: a stable `code` a caller
 * can branch on, and a one-line `reason` a person can act on.
 */
export class RuntimeError extends Error {
  constructor(
    /** Stable identifier, for example `ATTESTATION_SIGNATURE` or `REPLAY`. */
    public readonly code: string,
    /** One line, no trailing period: what is wrong. */
    public readonly reason: string,
  ) {
    super(`${code}: ${reason}`);
    this.name = new.target.name;
  }
}

/** `reason` cut to at most `maxChars` characters, ending in '...' when cut: what a peer or a result field accepts. */
export function fitReason(reason: string, maxChars: number): string {
  return reason.length > maxChars ? `${reason.slice(0, maxChars - 3)}...` : reason;
}

/** Wrong command-line usage: printed with the command's usage line, exit status 2. */
export class UsageError extends RuntimeError {
  constructor(reason: string) {
    super('USAGE', reason);
  }
}
