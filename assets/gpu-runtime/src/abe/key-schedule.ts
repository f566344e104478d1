/**
 * The ABE v1 key schedule (ABE.md, "Key schedule"):
 *
 *   shared      = ECDH-P384(own private key, peer public key)          48 bytes, the x-coordinate
 *   salt        = SHA-384(PCR0 || PCR1 || PCR2)                        raw 48-byte PCR values
 *   info        = "egpu-abe-v1 session" || lp(session id) || lp(context public key) || lp(enclave public key)
 *                 where lp(x) = uint16be(length of x) || x
 *   session key = HKDF-SHA384(ikm = shared, salt, info, L = 32)        RFC 5869 Extract then Expand
 *   K_n         = HKDF-Expand-SHA384(PRK = session key, "launch" || uint64be(n), L = 32)
 *
 * HKDF is written out here with HMAC-SHA384 (node:crypto createHmac) rather than hkdfSync,
 * because K_n is an Expand without an Extract, which hkdfSync cannot express; the session
 * key uses the same two functions so the schedule reads as one piece. The tests recompute
 * both with hkdfSync/createHmac directly. Using a 32-byte session key as the PRK of an
 * SHA-384 Expand is sound: HMAC accepts any key length, and 256 bits is the key's strength.
 *
 * Every intermediate secret this module creates (shared secret, PRK, HMAC blocks) is
 * zeroised before it returns; the keys it returns belong to the caller, who zeroises them
 * when their operation or session ends. (OpenSSL's own copies inside HMAC and ECDH objects
 * are cleansed by OpenSSL when those objects are freed.)
 */
import { ECDH, createECDH, createHash, createHmac } from 'node:crypto';
import { AbeError, expectLength, expectUint } from './errors';
import { MAX_OPERATION } from './limits';

export const P384_PUBLIC_KEY_BYTES = 97; // SEC1 uncompressed: 0x04 || x || y
export const SESSION_ID_BYTES = 16;
export const PCR_BYTES = 48;
export const SESSION_KEY_BYTES = 32;
export const OPERATION_KEY_BYTES = 32;

const SESSION_LABEL = Buffer.from('egpu-abe-v1 session', 'ascii');
const OPERATION_LABEL = Buffer.from('launch', 'ascii');
const SHA384_BYTES = 48;

/** PCR0, PCR1 and PCR2 of the attested enclave image, 48 raw bytes each. */
export type ImagePcrs = readonly [Buffer, Buffer, Buffer];

/** A fresh ECDH P-384 key pair, or the one with the given private key (known-answer tests). */
export function createEcdhKeyPair(privateKey?: Buffer): ECDH {
  const ecdh = createECDH('secp384r1');
  if (privateKey === undefined) {
    ecdh.generateKeys();
  } else {
    ecdh.setPrivateKey(privateKey);
  }
  return ecdh;
}

/** The key pair's public key in the one encoding ABE uses: SEC1 uncompressed, 97 bytes. */
export function publicKeyOf(ecdh: ECDH): Buffer {
  return ecdh.getPublicKey(undefined, 'uncompressed');
}

/**
 * Refuses anything but an uncompressed P-384 point that lies on the curve. Decoding the
 * point through OpenSSL checks the curve equation; P-384's cofactor is 1, so every point on
 * the curve is in the prime-order group.
 */
export function checkP384PublicKey(bytes: Buffer, what: string): void {
  if (bytes.length !== P384_PUBLIC_KEY_BYTES || bytes[0] !== 0x04) {
    throw new AbeError('INVALID_PUBLIC_KEY', `${what} must be an uncompressed P-384 point (97 bytes starting 04), got ${bytes.length} bytes`);
  }
  try {
    ECDH.convertKey(bytes, 'secp384r1');
  } catch {
    throw new AbeError('INVALID_PUBLIC_KEY', `${what} is not a point on P-384`);
  }
}

/** The ECDH shared secret with a checked peer key. The caller zeroises it. */
export function ecdhSharedSecret(own: ECDH, peerPublicKey: Buffer, what: string): Buffer {
  checkP384PublicKey(peerPublicKey, what);
  return own.computeSecret(peerPublicKey);
}

/** salt = SHA-384(PCR0 || PCR1 || PCR2): another enclave image gives another session key. */
export function pcrSalt(pcrs: ImagePcrs): Buffer {
  const hash = createHash('sha384');
  pcrs.forEach((pcr, index) => {
    if (pcr.length !== PCR_BYTES) {
      throw new AbeError('INVALID_PCR', `PCR${index} must be ${PCR_BYTES} bytes, got ${pcr.length}`);
    }
    hash.update(pcr);
  });
  return hash.digest();
}

/** The HKDF info of the session key: a fixed label, then each field length-prefixed. */
export function sessionInfo(sessionId: Buffer, contextPublicKey: Buffer, enclavePublicKey: Buffer): Buffer {
  expectLength('session id', sessionId, SESSION_ID_BYTES);
  expectLength('context public key', contextPublicKey, P384_PUBLIC_KEY_BYTES);
  expectLength('enclave public key', enclavePublicKey, P384_PUBLIC_KEY_BYTES);
  return Buffer.concat([SESSION_LABEL, ...[sessionId, contextPublicKey, enclavePublicKey].map(lengthPrefixed)]);
}

export interface SessionKeyInputs {
  /** The ECDH secret (the HKDF input keying material). Not zeroised here: it is the caller's. */
  readonly sharedSecret: Buffer;
  readonly pcrs: ImagePcrs;
  readonly sessionId: Buffer;
  readonly contextPublicKey: Buffer;
  readonly enclavePublicKey: Buffer;
}

/** The 32-byte session key. The caller owns it and zeroises it when the session ends. */
export function deriveSessionKey(inputs: SessionKeyInputs): Buffer {
  const prk = hkdfExtract(pcrSalt(inputs.pcrs), inputs.sharedSecret);
  try {
    return hkdfExpand(prk, sessionInfo(inputs.sessionId, inputs.contextPublicKey, inputs.enclavePublicKey), SESSION_KEY_BYTES);
  } finally {
    prk.fill(0);
  }
}

/** The HKDF info of K_n: "launch" || uint64be(n). */
export function operationInfo(n: number): Buffer {
  expectUint('operation counter', n, MAX_OPERATION);
  const info = Buffer.alloc(OPERATION_LABEL.length + 8);
  OPERATION_LABEL.copy(info);
  info.writeBigUInt64BE(BigInt(n), OPERATION_LABEL.length);
  return info;
}

/** K_n, the key of operation n. The caller owns it and zeroises it when the operation completes. */
export function deriveOperationKey(sessionKey: Buffer, n: number): Buffer {
  expectLength('session key', sessionKey, SESSION_KEY_BYTES);
  return hkdfExpand(sessionKey, operationInfo(n), OPERATION_KEY_BYTES);
}

/** RFC 5869 HKDF-Extract with SHA-384: PRK = HMAC(salt, ikm). */
export function hkdfExtract(salt: Buffer, ikm: Buffer): Buffer {
  return createHmac('sha384', salt).update(ikm).digest();
}

/** RFC 5869 HKDF-Expand with SHA-384: T(i) = HMAC(PRK, T(i-1) || info || i), the first `length` bytes. */
export function hkdfExpand(prk: Buffer, info: Buffer, length: number): Buffer {
  if (!Number.isInteger(length) || length < 1 || length > 255 * SHA384_BYTES) {
    throw new AbeError('INVALID_ARGUMENT', `HKDF-Expand length must be 1..${255 * SHA384_BYTES}, got ${length}`);
  }
  const okm = Buffer.alloc(length);
  let previous = Buffer.alloc(0);
  for (let i = 1, written = 0; written < length; i++) {
    const block = createHmac('sha384', prk).update(previous).update(info).update(Buffer.of(i)).digest();
    written += block.copy(okm, written);
    previous.fill(0);
    previous = block;
  }
  previous.fill(0);
  return okm;
}

function lengthPrefixed(field: Buffer): Buffer {
  const prefix = Buffer.alloc(2);
  prefix.writeUInt16BE(field.length);
  return Buffer.concat([prefix, field]);
}
