import { RuntimeError } from '../errors';

/**
 * Why an attestation document was refused. Stable: callers (SGS admission, the CLI, tests)
 * branch on these.
 * - MALFORMED: not a well-formed document (COSE/CBOR structure, a field's type or size,
 *   an algorithm other than ES384, a certificate that is not DER X.509).
 * - ROOT_MISMATCH: the chain does not start at the pinned root.
 * - CHAIN: a certificate was not issued and signed (ECDSA with SHA-384) by the one before it.
 * - EXPIRED, NOT_YET_VALID: a certificate is outside its validity period at the given time.
 * - CONSTRAINTS: a certificate breaks the CA, key-usage, path-length or key-type rules.
 * - SIGNATURE: the ES384 signature over the document is not the leaf's.
 * - NONCE_MISMATCH, PCR_MISMATCH: authentic, but not the nonce or measurements expected.
 * - STALE: authentic, but its timestamp is further from the verification time than allowed.
 */
export type AttestationErrorCode =
  | 'MALFORMED'
  | 'ROOT_MISMATCH'
  | 'CHAIN'
  | 'EXPIRED'
  | 'NOT_YET_VALID'
  | 'CONSTRAINTS'
  | 'SIGNATURE'
  | 'NONCE_MISMATCH'
  | 'PCR_MISMATCH'
  | 'STALE';

/** An attestation document refused, with the check that refused it. */
export class AttestationError extends RuntimeError {
  declare readonly code: AttestationErrorCode;

  constructor(code: AttestationErrorCode, reason: string) {
    super(code, reason);
  }
}
