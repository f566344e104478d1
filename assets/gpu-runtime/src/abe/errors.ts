import { RuntimeError } from '../errors';

/**
 * Why ABE refused something. Each refusal is one of these, so a caller (and the replay and
 * attestation metrics) can branch on the kind without parsing the reason.
 */
export type AbeErrorCode =
  /** A length, count or value beyond the hard limits in limits.ts. */
  | 'TOO_LARGE'
  /** Bytes that do not follow the ABE v1 encoding. */
  | 'MALFORMED'
  /** An operation counter at or below the last one accepted, or a chunk already opened. */
  | 'REPLAY'
  /** A chunk or operation ahead of the one expected next. */
  | 'OUT_OF_ORDER'
  /** An operation or frame that ends before its last chunk or its last byte. */
  | 'TRUNCATED'
  /** The AES-GCM tag does not verify: wrong key, or modified header, ciphertext or tag. */
  | 'AUTH_FAILED'
  /** A frame or handshake reply for another session. */
  | 'WRONG_SESSION'
  /** A frame sealed for the other direction. */
  | 'WRONG_DIRECTION'
  /** A frame whose kernel digest differs from the operation's. */
  | 'WRONG_DIGEST'
  /** An ECDH public key that is not an uncompressed P-384 point on the curve. */
  | 'INVALID_PUBLIC_KEY'
  /** Attested PCRs missing or not 48 bytes. */
  | 'INVALID_PCR'
  /** A caller error: a key, nonce, tag or buffer of the wrong size or type, a negative or fractional counter or id. */
  | 'INVALID_ARGUMENT'
  /** Sealing under an operation counter already used: it would repeat nonces under K_n. */
  | 'NONCE_REUSE'
  /** Use of an operation or session that is complete, failed or closed (its key is gone). */
  | 'CLOSED';

export class AbeError extends RuntimeError {
  constructor(public readonly code: AbeErrorCode, reason: string) {
    super(code, reason);
  }
}

/** Throws `code` (INVALID_ARGUMENT by default) unless `value` is exactly `length` bytes. */
export function expectLength(what: string, value: Uint8Array, length: number, code: AbeErrorCode = 'INVALID_ARGUMENT'): void {
  if (value.length !== length) {
    throw new AbeError(code, `${what} must be ${length} bytes, got ${value.length}`);
  }
}

/**
 * Throws unless `value` is a whole number in 0..max: TOO_LARGE above the limit (ABE.md,
 * "Limits", the code a receiver gives for the same value), INVALID_ARGUMENT for a negative,
 * fractional or non-numeric value.
 */
export function expectUint(what: string, value: number, max: number): void {
  if (value > max) {
    throw new AbeError('TOO_LARGE', `${what} ${value} exceeds ${max}`);
  }
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new AbeError('INVALID_ARGUMENT', `${what} ${value} is not an integer in 0..${max}`);
  }
}
