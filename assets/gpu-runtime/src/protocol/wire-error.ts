import { RuntimeError } from '../errors';

/**
 * The errors that cross the wire, in `error` control messages, and that callers branch on.
 */
export type WireErrorCode =
  /** The session's queue is full: retry the same operation after `retryAfterMs`. */
  | 'BUSY'
  /** The enclave's attestation did not verify, or its PCRs are not in SGS's allowlist. */
  | 'UNAUTHORIZED'
  /** An operation number at or below one already accepted. */
  | 'REPLAY'
  /** A record, buffer or operation beyond a hard limit or a partition's cap. */
  | 'TOO_LARGE'
  /** An operation missed its deadline. */
  | 'TIMEOUT'
  /** Bytes or messages that do not follow the protocol (including frames that fail to open). */
  | 'MALFORMED'
  /** The peer failed (for example the execution context restarted); the session is gone. */
  | 'INTERNAL';

export const WIRE_ERROR_CODES: readonly WireErrorCode[] = ['BUSY', 'UNAUTHORIZED', 'REPLAY', 'TOO_LARGE', 'TIMEOUT', 'MALFORMED', 'INTERNAL'];

export class WireError extends RuntimeError {
  constructor(
    public readonly code: WireErrorCode,
    reason: string,
    /** For BUSY: when to retry. */
    public readonly retryAfterMs?: number,
  ) {
    super(code, reason);
  }
}

/**
 * The wire code of any error a handler threw: wire errors keep theirs, ABE and attestation
 * refusals map to the nearest wire code, anything else is INTERNAL (its reason is not sent,
 * so no detail of a host failure reaches the peer by accident).
 */
export function toWireError(error: unknown): WireError {
  if (error instanceof WireError) return error;
  if (error instanceof RuntimeError) {
    switch (error.code) {
      case 'REPLAY':
        return new WireError('REPLAY', error.reason);
      case 'TOO_LARGE':
        return new WireError('TOO_LARGE', error.reason);
      case 'EXPIRED': case 'NOT_YET_VALID': case 'ROOT_MISMATCH': case 'CHAIN': case 'CONSTRAINTS':
      case 'SIGNATURE': case 'NONCE_MISMATCH': case 'PCR_MISMATCH': case 'STALE': case 'INVALID_PCR': case 'INVALID_PUBLIC_KEY':
        return new WireError('UNAUTHORIZED', `${error.code}: ${error.reason}`);
      default:
        return new WireError('MALFORMED', `${error.code}: ${error.reason}`);
    }
  }
  return new WireError('INTERNAL', 'internal error');
}
