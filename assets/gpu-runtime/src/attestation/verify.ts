/**
 * Verifies an AWS Nitro Enclaves attestation document: the checks of AWS's "Verifying the
 * root of trust", in order, each failure an AttestationError naming what was wrong.
 */
import { X509Certificate } from 'node:crypto';
import { AttestationError } from './attestation-error';
import { verifyChain } from './chain';
import { verifyEs384 } from './cose';
import { DIGEST, parseAttestationDocument } from './document';
import { resolveRoot, RootOption } from './root';

export interface VerifyOptions {
  /** The pinned root: 'aws' (the AWS Nitro root G1, the default) or a certificate. */
  readonly root?: RootOption;
  /** When the certificates must be valid; default now. */
  readonly at?: Date;
  /** The nonce the document must carry, when the verifier sent one. */
  readonly expectedNonce?: Buffer;
  /** PCR index to the value (hex, either case) the document must carry. */
  readonly expectedPcrs?: Readonly<Record<number, string>>;
  /**
   * Freshness: the most the document's timestamp may lie before `at`, in milliseconds (and
   * at most MAX_CLOCK_AHEAD_MS after it, for the clocks of the enclave and the verifier).
   * Unchecked when absent (a document verified long after it was made, e.g. a test vector).
   */
  readonly maxAgeMs?: number;
}

/** How far a document's timestamp may be ahead of the verifier's clock when maxAgeMs is checked. */
export const MAX_CLOCK_AHEAD_MS = 60_000;

/**
 * The maxAgeMs of the session handshake's checks (SGS admission, the execution context): the
 * document is made for the hello's fresh nonce moments before, so anything older was held
 * back (the nonce already rules out a replay; this bounds the delay).
 */
export const HANDSHAKE_DOCUMENT_MAX_AGE_MS = 5 * 60_000;

/** What a verified document attests. */
export interface VerifiedAttestation {
  readonly moduleId: string;
  readonly timestamp: Date;
  readonly digest: typeof DIGEST;
  /** PCR index to its value, lower-case hex. */
  readonly pcrs: Record<number, string>;
  readonly publicKey?: Buffer;
  readonly userData?: Buffer;
  readonly nonce?: Buffer;
  /** The leaf certificate that signed the document. */
  readonly certificate: X509Certificate;
}

export function verifyAttestationDocument(bytes: Buffer, options: VerifyOptions = {}): VerifiedAttestation {
  const at = options.at ?? new Date();
  if (Number.isNaN(at.getTime())) {
    // An invalid date compares false both ways and would pass every validity check.
    throw new TypeError('verifyAttestationDocument: `at` is an invalid Date');
  }
  if (options.maxAgeMs !== undefined && !(Number.isFinite(options.maxAgeMs) && options.maxAgeMs >= 0)) {
    // NaN compares false both ways too: the freshness check would pass every document.
    throw new TypeError(`verifyAttestationDocument: \`maxAgeMs\` must be a finite number of milliseconds, at least 0, got ${options.maxAgeMs}`);
  }
  const doc = parseAttestationDocument(bytes);
  const leaf = verifyChain(resolveRoot(options.root ?? 'aws'), doc.cabundle, doc.certificate, at);
  if (!verifyEs384(doc.protectedHeader, doc.payload, doc.signature, leaf.publicKey)) {
    throw new AttestationError('SIGNATURE', `the ES384 signature is not the leaf's (${doc.moduleId}) over this document`);
  }
  if (options.expectedNonce && !(doc.nonce && doc.nonce.equals(options.expectedNonce))) {
    throw new AttestationError('NONCE_MISMATCH', doc.nonce
      ? `nonce is ${doc.nonce.toString('hex')}, expected ${options.expectedNonce.toString('hex')}`
      : `the document carries no nonce, expected ${options.expectedNonce.toString('hex')}`);
  }
  if (options.maxAgeMs !== undefined) {
    const age = at.getTime() - doc.timestamp;
    if (age > options.maxAgeMs || age < -MAX_CLOCK_AHEAD_MS) {
      throw new AttestationError('STALE', `the document was made at ${new Date(doc.timestamp).toISOString()}, ${age >= 0 ? `${age} ms before` : `${-age} ms after`} the verification time ${at.toISOString()}; at most ${options.maxAgeMs} ms before (or ${MAX_CLOCK_AHEAD_MS} ms after) is accepted`);
    }
  }
  const pcrs = Object.fromEntries([...doc.pcrs].map(([index, value]) => [index, value.toString('hex')]));
  for (const [index, expected] of Object.entries(options.expectedPcrs ?? {})) {
    const actual: string | undefined = pcrs[Number(index)];
    if (actual !== expected.toLowerCase()) {
      throw new AttestationError('PCR_MISMATCH', actual === undefined
        ? `PCR${index} is not in the document, expected ${expected.toLowerCase()}`
        : `PCR${index} is ${actual}, expected ${expected.toLowerCase()}`);
    }
  }
  return {
    moduleId: doc.moduleId,
    timestamp: new Date(doc.timestamp),
    digest: doc.digest,
    pcrs,
    publicKey: doc.publicKey,
    userData: doc.userData,
    nonce: doc.nonce,
    certificate: leaf,
  };
}
