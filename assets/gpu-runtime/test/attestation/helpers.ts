/**
 * Shared by the attestation tests: the real AWS document, a way to find a field's bytes in
 * it, and hand-built chains and documents (with the production certificate builder and
 * COSE signer) for cases the simulated NSM would never produce.
 */
import { generateKeyPairSync, KeyObject, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { KeyUsageFlags } from '@peculiar/asn1-x509';
import { expect } from 'vitest';
import { CborValue, decodeCbor, encodeCbor } from '../../../../lib/shared/cbor';
import { AttestationErrorCode } from '../../src/attestation/attestation-error';
import { CertificateRequest, issueCertificate } from '../../src/attestation/certificate-builder';
import { signCoseSign1 } from '../../src/attestation/cose';
import { AttestationPayload, encodeAttestationPayload } from '../../src/attestation/document';
import { refusal as sharedRefusal } from '../refusal';

export const REPO_ROOT = path.resolve(__dirname, '..', '..', '..', '..');
export const AWS_VECTOR_PATH = path.resolve(REPO_ROOT, '..', 'shared', 'test-vectors', 'nitro-debug-2024-09-17.b64');

/** The genuine document (untagged COSE_Sign1) and the facts its README states. */
export const AWS_DOCUMENT = Buffer.from(readFileSync(AWS_VECTOR_PATH, 'utf8').trim(), 'base64');
export const AWS_FACTS = {
  timestamp: new Date('2024-09-17T04:30:41.800Z'),
  leafNotBefore: new Date('2024-09-17T04:30:38Z'),
  leafNotAfter: new Date('2024-09-17T07:30:41Z'),
  moduleId: 'i-0bbf1bfe232b8c2ce-enc0191fc27458c1d41',
  pcr3: '671ca1e328f75015b2aeee60639cc5252bc835d8bb690444d1f8e2bf4260f73dc1b71e07a14a770c7d0becac6eb3b53f',
  pcr4: 'd352cfa31b8dc5f4856c9fa8181b19ed12f5da23883ac4ec729530f50dc1d37f1ac3876a7af39bd4de7a2aead14d14cb',
  nonce: '0000000000000000000000000000000000000001',
};

/** Runs `action` and checks it throws an AttestationError with `code`; returns the reason. */
export function refusal(action: () => unknown, code: AttestationErrorCode): string {
  const error = sharedRefusal(action);
  expect(error).toMatchObject({ name: 'AttestationError', code });
  return error.reason;
}

/** A copy of `bytes` with the byte at `offset` changed. */
export function flipped(bytes: Buffer, offset: number, mask = 0x01): Buffer {
  const copy = Buffer.from(bytes);
  copy[offset] ^= mask;
  return copy;
}

/** Where `needle` occurs in `haystack`, asserting it occurs exactly once. */
export function offsetOf(haystack: Buffer, needle: Buffer): number {
  const offset = haystack.indexOf(needle);
  expect(offset, 'needle not found').toBeGreaterThanOrEqual(0);
  expect(haystack.lastIndexOf(needle), 'needle not unique').toBe(offset);
  return offset;
}

/**
 * The byte range of a payload value inside a document, found by its key and value encoded
 * together (unique even when the value alone is not, like a nonce of zeros).
 */
export function valueRange(document: Buffer, key: CborValue, value: Buffer | string | number): { start: number; end: number } {
  const encodedKey = encodeCbor(key);
  const encodedValue = encodeCbor(value);
  // An integer's content is its argument: all of the encoding after the one-byte head.
  const contentLength = typeof value === 'number' ? encodedValue.length - 1 : Buffer.byteLength(value);
  const start = offsetOf(document, Buffer.concat([encodedKey, encodedValue])) + encodedKey.length + encodedValue.length - contentLength;
  return { start, end: start + contentLength };
}

/** The decoded top-level COSE_Sign1 array and payload map of a document. */
export function decodeDocument(document: Buffer): { parts: CborValue[]; payload: Map<CborValue, CborValue> } {
  const parts = decodeCbor(document) as CborValue[];
  return { parts, payload: decodeCbor(parts[2] as Buffer) as Map<CborValue, CborValue> };
}

/** A document with its payload map changed and a dummy signature: for checks made before any signature. */
export function withPayload(document: Buffer, change: (payload: Map<CborValue, CborValue>) => void): Buffer {
  const { parts, payload } = decodeDocument(document);
  change(payload);
  return encodeCbor([parts[0], parts[1], encodeCbor(payload), parts[3]]);
}

export const T0 = new Date('2030-01-01T00:00:00Z');
const HOUR = 3600_000;
const DAY = 24 * HOUR;

type Overrides = Partial<Omit<CertificateRequest, 'publicKey' | 'signer'>>;

/** A hand-built root -> intermediate -> leaf chain, valid around T0 unless overridden. */
export interface TestChain {
  readonly root: X509Certificate;
  readonly cabundle: Buffer[];
  readonly leaf: X509Certificate;
  readonly leafKey: KeyObject;
}

export function buildChain(overrides: { root?: Overrides; intermediate?: Overrides; leaf?: Overrides; leafCurve?: string } = {}): TestChain {
  const rootKeys = p384();
  const root = issueCertificate({
    commonName: 'test root', publicKey: rootKeys.publicKey, signer: { privateKey: rootKeys.privateKey },
    notBefore: new Date(T0.getTime() - DAY), notAfter: new Date(T0.getTime() + 365 * DAY),
    ca: {}, keyUsage: KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign, ...overrides.root,
  });
  const intermediateKeys = p384();
  const intermediate = issueCertificate({
    commonName: 'test intermediate', publicKey: intermediateKeys.publicKey, signer: { certificate: root, privateKey: rootKeys.privateKey },
    notBefore: new Date(T0.getTime() - DAY), notAfter: new Date(T0.getTime() + 30 * DAY),
    ca: { pathLength: 0 }, keyUsage: KeyUsageFlags.keyCertSign, ...overrides.intermediate,
  });
  const leafKeys = generateKeyPairSync('ec', { namedCurve: overrides.leafCurve ?? 'P-384' });
  const leaf = issueCertificate({
    commonName: 'test leaf', publicKey: leafKeys.publicKey, signer: { certificate: intermediate, privateKey: intermediateKeys.privateKey },
    notBefore: new Date(T0.getTime() - HOUR), notAfter: new Date(T0.getTime() + 3 * HOUR),
    keyUsage: KeyUsageFlags.digitalSignature, ...overrides.leaf,
  });
  return { root, cabundle: [root.raw, intermediate.raw], leaf, leafKey: leafKeys.privateKey };
}

/** A correctly signed document over `chain`, made at T0, with any payload fields overridden. */
export function signedDocument(chain: TestChain, fields: Partial<AttestationPayload> = {}): Buffer {
  return signCoseSign1(encodeAttestationPayload({
    moduleId: 'i-00000000000000000-enc0000000000000000',
    digest: 'SHA384',
    timestamp: T0.getTime(),
    pcrs: new Map(Array.from({ length: 16 }, (_, i) => [i, Buffer.alloc(48)])),
    certificate: chain.leaf.raw,
    cabundle: chain.cabundle,
    ...fields,
  }), chain.leafKey);
}

function p384(): { publicKey: KeyObject; privateKey: KeyObject } {
  return generateKeyPairSync('ec', { namedCurve: 'P-384' });
}
