import { RuntimeError } from '../errors';

/**
 * Why an EGP call failed. The client retries transport and host failures itself (a new
 * session, the journal replayed), so an application sees only these.
 */
export type EgpErrorCode =
  /** The execution context ran the operation and refused it (its code is in `remote`). */
  | 'OPERATION_FAILED'
  /** SGS or the context refused the enclave's attestation: retrying cannot help. */
  | 'UNAUTHORIZED'
  /** Reconnecting failed for longer than the client's reconnect budget. */
  | 'UNAVAILABLE'
  /** Rebuilding device state in a new session failed (a replayed operation was refused). */
  | 'REPLAY_FAILED'
  /** A size, count or queue beyond the client's hard limits. */
  | 'TOO_LARGE'
  /** A caller error: an unknown buffer, a kernel without a known digest, bad arguments. */
  | 'INVALID_ARGUMENT'
  /** The client was closed before the call completed. */
  | 'CLOSED';

export class EgpError extends RuntimeError {
  constructor(
    public readonly code: EgpErrorCode,
    reason: string,
    /** For OPERATION_FAILED: the code the execution context gave. */
    public readonly remote?: string,
  ) {
    super(code, reason);
  }
}
