/**
 * The slice of COSE (RFC 9052) that Nitro attestation documents use: COSE_Sign1 with ES384
 * (ECDSA P-384 over SHA-384) in the protected header, nothing in the unprotected one, and
 * the raw 96-byte r||s signature.
 */
import { KeyObject, sign, verify } from 'node:crypto';
import { encodeCbor } from '../../../../lib/shared/cbor';

/** CBOR tag of COSE_Sign1; as a one-byte head it is 0xd2. */
export const COSE_SIGN1_TAG_BYTE = 0xd2;

/** COSE algorithm identifier of ES384. */
const ES384 = -35;

/** Header label of the algorithm. */
const ALG_LABEL = 1;

/** ES384 signatures are r||s, 48 bytes each. */
export const ES384_SIGNATURE_BYTES = 96;

/** The protected header every document carries: `{1: -35}`. */
export const ES384_PROTECTED_HEADER = encodeCbor(new Map([[ALG_LABEL, ES384]]));

/**
 * The bytes the signature covers: `["Signature1", protected, external_aad = h'', payload]`.
 * Built from the exact protected and payload bytes received, never from re-encoded values.
 */
function signature1Input(protectedHeader: Buffer, payload: Buffer): Buffer {
  return encodeCbor(['Signature1', protectedHeader, Buffer.alloc(0), payload]);
}

/** True when `signature` is the ES384 signature of `payload` under `publicKey`. */
export function verifyEs384(protectedHeader: Buffer, payload: Buffer, signature: Buffer, publicKey: KeyObject): boolean {
  return verify('sha384', signature1Input(protectedHeader, payload), { key: publicKey, dsaEncoding: 'ieee-p1363' }, signature);
}

/** An untagged COSE_Sign1 of `payload`, signed ES384 with `privateKey`, as the NSM returns it. */
export function signCoseSign1(payload: Buffer, privateKey: KeyObject): Buffer {
  const signature = sign('sha384', signature1Input(ES384_PROTECTED_HEADER, payload), { key: privateKey, dsaEncoding: 'ieee-p1363' });
  return encodeCbor([ES384_PROTECTED_HEADER, new Map(), payload, signature]);
}
