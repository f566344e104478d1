/**
 * The AWS Nitro Enclaves attestation document: an ES384 COSE_Sign1 whose payload is a CBOR
 * map. Parsing checks shape and sizes only (the limits AWS specifies in "Verifying the root
 * of trust"); whether the document is genuine is verify.ts's job.
 */
import { CborError, CborValue, decodeCbor, encodeCbor } from '../../../../lib/shared/cbor';
import { AttestationError } from './attestation-error';
import { COSE_SIGN1_TAG_BYTE, ES384_PROTECTED_HEADER, ES384_SIGNATURE_BYTES } from './cose';

/**
 * Hard limits. AWS bounds each field; the whole document is bounded so that hostile input
 * is refused before any decoding (a genuine one is about 4.5 KiB).
 */
export const LIMITS = {
  documentBytes: 16 * 1024,
  /** Every PCR is a SHA-384 digest, since `digest` can only be SHA384. */
  pcrBytes: 48,
  maxPcrs: 32,
  certificateBytes: 1024,
  /** AWS chains hold 4 (root, regional, zonal, instance); each costs a signature check. */
  maxCabundle: 8,
  publicKeyBytes: 1024,
  userDataBytes: 512,
  nonceBytes: 512,
} as const;

/** Digest algorithm of the PCRs; the only one AWS specifies. */
export const DIGEST = 'SHA384';

/** The payload's fields, in the order the NSM writes them. */
export interface AttestationPayload {
  readonly moduleId: string;
  readonly digest: typeof DIGEST;
  /** Milliseconds since the Unix epoch, when the NSM produced the document. */
  readonly timestamp: number;
  /** PCR index (0..31) to its value. */
  readonly pcrs: ReadonlyMap<number, Buffer>;
  /** DER of the leaf certificate, whose key signs the document. */
  readonly certificate: Buffer;
  /** DER certificates from the root (first) to the leaf's issuer (last). */
  readonly cabundle: readonly Buffer[];
  readonly publicKey?: Buffer;
  readonly userData?: Buffer;
  readonly nonce?: Buffer;
}

/** A parsed document: its payload fields, plus the exact signed bytes to verify. */
export interface AttestationDocument extends AttestationPayload {
  readonly protectedHeader: Buffer;
  readonly payload: Buffer;
  readonly signature: Buffer;
}

const PAYLOAD_KEYS = ['module_id', 'digest', 'timestamp', 'pcrs', 'certificate', 'cabundle', 'public_key', 'user_data', 'nonce'];

/** Parses a tagged or untagged COSE_Sign1 attestation document; throws MALFORMED otherwise. */
export function parseAttestationDocument(bytes: Buffer): AttestationDocument {
  if (bytes.length > LIMITS.documentBytes) {
    throw malformed(`document is ${bytes.length} bytes, at most ${LIMITS.documentBytes}`);
  }
  const body = bytes[0] === COSE_SIGN1_TAG_BYTE ? bytes.subarray(1) : bytes;
  // 0x84 = array of 4. Checked on the bytes because the CBOR decoder skips tags silently,
  // and only tag 18 (COSE_Sign1) may precede it.
  if (body[0] !== 0x84) {
    throw malformed('not a COSE_Sign1: expected an array of 4 items, untagged or with tag 18');
  }
  const [protectedHeader, unprotected, payload, signature] = decode(body, 'COSE_Sign1') as CborValue[];
  if (!Buffer.isBuffer(protectedHeader) || !protectedHeader.equals(ES384_PROTECTED_HEADER)) {
    throw malformed(`protected header must be {1: -35} (ES384), got ${describe(protectedHeader)}`);
  }
  // Unprotected headers are not signed: refuse them rather than risk trusting one.
  if (!(unprotected instanceof Map) || unprotected.size !== 0) {
    throw malformed('unprotected header must be an empty map');
  }
  if (!Buffer.isBuffer(payload)) {
    throw malformed('payload must be a byte string');
  }
  if (!Buffer.isBuffer(signature) || signature.length !== ES384_SIGNATURE_BYTES) {
    throw malformed(`signature must be ${ES384_SIGNATURE_BYTES} bytes (ES384 r||s), got ${describe(signature)}`);
  }
  // The signature covers the payload's bytes, not the envelope's: without this, longer heads
  // or tags around the elements would give other bytes that verify as the same document.
  if (!encodeCbor([protectedHeader, unprotected, payload, signature]).equals(body)) {
    throw malformed('the COSE_Sign1 is not in its canonical encoding (shortest lengths, no tags inside)');
  }
  return { ...parsePayload(payload), protectedHeader, payload, signature };
}

function parsePayload(bytes: Buffer): AttestationPayload {
  const map = decode(bytes, 'payload');
  if (!(map instanceof Map)) {
    throw malformed('payload must be a CBOR map');
  }
  // Signed, but read by others too (KMS): one encoding only, so that no reader of it can see
  // other values than this one (a tag, a longer head or a key written twice in two forms).
  if (!encodeCbor(map).equals(bytes)) {
    throw malformed('payload is not in its canonical encoding (shortest lengths, no tags)');
  }
  for (const key of map.keys()) {
    if (typeof key !== 'string' || !PAYLOAD_KEYS.includes(key)) {
      throw malformed(`payload has an unexpected field ${describe(key)}`);
    }
  }
  const moduleId = map.get('module_id');
  if (typeof moduleId !== 'string' || moduleId.length === 0) {
    throw malformed('module_id must be non-empty text');
  }
  const digest = map.get('digest');
  if (digest !== DIGEST) {
    throw malformed(`digest must be "${DIGEST}", got ${describe(digest)}`);
  }
  const timestamp = map.get('timestamp');
  if (typeof timestamp !== 'number' || !Number.isSafeInteger(timestamp) || timestamp < 1) {
    throw malformed(`timestamp must be a positive integer of milliseconds, got ${describe(timestamp)}`);
  }
  const cabundle = map.get('cabundle');
  if (!Array.isArray(cabundle) || cabundle.length < 1 || cabundle.length > LIMITS.maxCabundle) {
    throw malformed(`cabundle must be an array of 1 to ${LIMITS.maxCabundle} certificates`);
  }
  return {
    moduleId,
    digest,
    timestamp,
    pcrs: parsePcrs(map.get('pcrs')),
    certificate: bytesField(map.get('certificate'), 'certificate', 1, LIMITS.certificateBytes),
    cabundle: cabundle.map((entry, i) => bytesField(entry, `cabundle[${i}]`, 1, LIMITS.certificateBytes)),
    publicKey: optionalBytesField(map.get('public_key'), 'public_key', 1, LIMITS.publicKeyBytes),
    userData: optionalBytesField(map.get('user_data'), 'user_data', 0, LIMITS.userDataBytes),
    nonce: optionalBytesField(map.get('nonce'), 'nonce', 0, LIMITS.nonceBytes),
  };
}

function parsePcrs(value: CborValue): Map<number, Buffer> {
  if (!(value instanceof Map) || value.size < 1 || value.size > LIMITS.maxPcrs) {
    throw malformed(`pcrs must be a map of 1 to ${LIMITS.maxPcrs} entries`);
  }
  const pcrs = new Map<number, Buffer>();
  for (const [index, pcr] of value) {
    if (typeof index !== 'number' || !Number.isInteger(index) || index < 0 || index >= LIMITS.maxPcrs) {
      throw malformed(`PCR index must be an integer 0 to ${LIMITS.maxPcrs - 1}, got ${describe(index)}`);
    }
    pcrs.set(index, bytesField(pcr, `PCR${index}`, LIMITS.pcrBytes, LIMITS.pcrBytes));
  }
  return pcrs;
}

function bytesField(value: CborValue, name: string, min: number, max: number): Buffer {
  if (!Buffer.isBuffer(value) || value.length < min || value.length > max) {
    const size = min === max ? `${min}` : `${min} to ${max}`;
    throw malformed(`${name} must be a byte string of ${size} bytes, got ${describe(value)}`);
  }
  return value;
}

/** The NSM writes null for an optional field it was not given; absent is accepted too. */
function optionalBytesField(value: CborValue, name: string, min: number, max: number): Buffer | undefined {
  return value === null || value === undefined ? undefined : bytesField(value, name, min, max);
}

/** Encodes a payload exactly as the NSM does: fields in its order, null for absent options. */
export function encodeAttestationPayload(payload: AttestationPayload): Buffer {
  return encodeCbor(new Map<CborValue, CborValue>([
    ['module_id', payload.moduleId],
    ['digest', payload.digest],
    ['timestamp', payload.timestamp],
    ['pcrs', new Map<CborValue, CborValue>([...payload.pcrs].sort(([a], [b]) => a - b))],
    ['certificate', payload.certificate],
    ['cabundle', [...payload.cabundle]],
    ['public_key', payload.publicKey ?? null],
    ['user_data', payload.userData ?? null],
    ['nonce', payload.nonce ?? null],
  ]));
}

function decode(bytes: Buffer, what: string): CborValue {
  try {
    return decodeCbor(bytes);
  } catch (error) {
    if (error instanceof CborError) {
      throw malformed(`${what} is not valid CBOR: ${error.message}`);
    }
    throw error;
  }
}

/** A short description of a value for a reason line: a size or a short prefix, never a whole blob. */
function describe(value: CborValue): string {
  if (Buffer.isBuffer(value)) return `${value.length} bytes`;
  if (typeof value === 'string') return JSON.stringify(value.length > 32 ? `${value.slice(0, 32)}...` : value);
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (value instanceof Map) return `a map of ${value.size}`;
  return String(value);
}

function malformed(reason: string): AttestationError {
  return new AttestationError('MALFORMED', reason);
}
