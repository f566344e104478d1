/**
 * The document's shape and AWS's field limits, checked before any cryptography: each broken
 * rule is MALFORMED with a reason naming the field.
 */
import { describe, expect, it } from 'vitest';
import { CborValue, encodeCbor } from '../../../../lib/shared/cbor';
import { parseAttestationDocument } from '../../src/attestation/document';
import { SimulatedNsm } from '../../src/attestation/simulated-nsm';
import { verifyAttestationDocument } from '../../src/attestation/verify';
import { decodeDocument, refusal, withPayload } from './helpers';

const nsm = SimulatedNsm.create();
const base = nsm.attest({ publicKey: Buffer.alloc(91, 1), userData: Buffer.from('user data'), nonce: Buffer.alloc(32, 2) });

function payloadRefused(change: (payload: Map<CborValue, CborValue>) => void): string {
  return refusal(() => parseAttestationDocument(withPayload(base, change)), 'MALFORMED');
}

function coseRefused(parts: CborValue[]): string {
  return refusal(() => parseAttestationDocument(encodeCbor(parts)), 'MALFORMED');
}

const [protectedHeader, unprotected, payload, signature] = decodeDocument(base).parts;

describe('field limits', () => {
  it('accepts every optional field at its largest size', () => {
    const largest = nsm.attest({ publicKey: Buffer.alloc(1024, 1), userData: Buffer.alloc(512, 2), nonce: Buffer.alloc(512, 3) });
    const verified = verifyAttestationDocument(largest, { root: nsm.rootCertificate });
    expect([verified.publicKey?.length, verified.userData?.length, verified.nonce?.length]).toEqual([1024, 512, 512]);
  });

  it.each([
    ['user_data', 513, 'user_data must be a byte string of 0 to 512 bytes, got 513 bytes'],
    ['nonce', 513, 'nonce must be a byte string of 0 to 512 bytes, got 513 bytes'],
    ['public_key', 1025, 'public_key must be a byte string of 1 to 1024 bytes, got 1025 bytes'],
    ['public_key', 0, 'public_key must be a byte string of 1 to 1024 bytes, got 0 bytes'],
    ['certificate', 1025, 'certificate must be a byte string of 1 to 1024 bytes, got 1025 bytes'],
    ['certificate', 0, 'certificate must be a byte string of 1 to 1024 bytes, got 0 bytes'],
  ])('refuses %s of %i bytes', (field, size, reason) => {
    expect(payloadRefused((p) => p.set(field, Buffer.alloc(size)))).toBe(reason);
  });

  it('the simulated NSM will not sign an oversized field either', () => {
    refusal(() => nsm.attest({ userData: Buffer.alloc(513) }), 'MALFORMED');
    refusal(() => nsm.attest({ nonce: Buffer.alloc(513) }), 'MALFORMED');
    refusal(() => nsm.attest({ publicKey: Buffer.alloc(1025) }), 'MALFORMED');
  });

  it('refuses optional fields of the wrong type, and accepts them null or absent', () => {
    expect(payloadRefused((p) => p.set('user_data', 'text'))).toBe('user_data must be a byte string of 0 to 512 bytes, got "text"');
    const withNulls = parseAttestationDocument(withPayload(base, (p) => ['public_key', 'user_data', 'nonce'].forEach((k) => p.set(k, null))));
    expect([withNulls.publicKey, withNulls.userData, withNulls.nonce]).toEqual([undefined, undefined, undefined]);
    const absent = parseAttestationDocument(withPayload(base, (p) => ['public_key', 'user_data', 'nonce'].forEach((k) => p.delete(k))));
    expect([absent.publicKey, absent.userData, absent.nonce]).toEqual([undefined, undefined, undefined]);
  });

  it('refuses PCRs outside the limits', () => {
    expect(payloadRefused((p) => p.set('pcrs', new Map()))).toBe('pcrs must be a map of 1 to 32 entries');
    expect(payloadRefused((p) => p.set('pcrs', new Map([[32, Buffer.alloc(48)]])))).toBe('PCR index must be an integer 0 to 31, got 32');
    expect(payloadRefused((p) => p.set('pcrs', new Map([[-1, Buffer.alloc(48)]])))).toBe('PCR index must be an integer 0 to 31, got -1');
    expect(payloadRefused((p) => p.set('pcrs', new Map([['0', Buffer.alloc(48)]])))).toBe('PCR index must be an integer 0 to 31, got "0"');
    // SHA384 is the only digest, so 32- and 64-byte PCRs (SHA-256, SHA-512) cannot be right.
    for (const size of [32, 47, 49, 64]) {
      expect(payloadRefused((p) => p.set('pcrs', new Map([[0, Buffer.alloc(size)]])))).toBe(`PCR0 must be a byte string of 48 bytes, got ${size} bytes`);
    }
    expect(payloadRefused((p) => p.set('pcrs', [Buffer.alloc(48)]))).toBe('pcrs must be a map of 1 to 32 entries');
  });

  it('refuses a cabundle that is empty, too long or not all byte strings', () => {
    expect(payloadRefused((p) => p.set('cabundle', []))).toBe('cabundle must be an array of 1 to 8 certificates');
    expect(payloadRefused((p) => p.set('cabundle', Array(9).fill(Buffer.alloc(10))))).toBe('cabundle must be an array of 1 to 8 certificates');
    expect(payloadRefused((p) => p.set('cabundle', [Buffer.alloc(10), 'x']))).toBe('cabundle[1] must be a byte string of 1 to 1024 bytes, got "x"');
  });

  it('refuses a wrong module_id, digest or timestamp', () => {
    expect(payloadRefused((p) => p.set('module_id', ''))).toBe('module_id must be non-empty text');
    expect(payloadRefused((p) => p.set('module_id', Buffer.from('i-1')))).toBe('module_id must be non-empty text');
    expect(payloadRefused((p) => p.set('digest', 'SHA256'))).toBe('digest must be "SHA384", got "SHA256"');
    expect(payloadRefused((p) => p.set('timestamp', 0))).toBe('timestamp must be a positive integer of milliseconds, got 0');
    expect(payloadRefused((p) => p.set('timestamp', -5))).toBe('timestamp must be a positive integer of milliseconds, got -5');
    expect(payloadRefused((p) => p.set('timestamp', 2n ** 64n - 1n))).toMatch(/^timestamp must be a positive integer/);
    expect(payloadRefused((p) => p.set('timestamp', '2024-09-17'))).toMatch(/^timestamp must be a positive integer/);
  });

  it('refuses a missing field and an unexpected one', () => {
    for (const field of ['module_id', 'digest', 'timestamp', 'pcrs', 'certificate', 'cabundle']) {
      expect(payloadRefused((p) => p.delete(field))).toMatch(new RegExp(`^${field} must`));
    }
    expect(payloadRefused((p) => p.set('extra', 1))).toBe('payload has an unexpected field "extra"');
    expect(payloadRefused((p) => p.set(7, 1))).toBe('payload has an unexpected field 7');
  });
});

describe('COSE_Sign1 structure', () => {
  it('refuses an array of other than 4 items', () => {
    coseRefused([protectedHeader, unprotected, payload]);
    coseRefused([protectedHeader, unprotected, payload, signature, Buffer.alloc(0)]);
  });

  it('refuses any protected header but {1: -35}', () => {
    const es256 = encodeCbor(new Map([[1, -7]]));
    expect(coseRefused([es256, unprotected, payload, signature])).toBe('protected header must be {1: -35} (ES384), got 3 bytes');
    coseRefused([encodeCbor(new Map<CborValue, CborValue>([[1, -35], [4, Buffer.from('kid')]])), unprotected, payload, signature]);
    coseRefused([Buffer.alloc(0), unprotected, payload, signature]);
    coseRefused([new Map([[1, -35]]), unprotected, payload, signature]);
  });

  it('refuses unprotected headers, which nothing signs', () => {
    expect(coseRefused([protectedHeader, new Map([[1, -35]]), payload, signature])).toBe('unprotected header must be an empty map');
  });

  it('refuses a payload that is not a byte string holding a map', () => {
    coseRefused([protectedHeader, unprotected, decodeDocument(base).payload, signature]);
    expect(coseRefused([protectedHeader, unprotected, encodeCbor([1, 2]), signature])).toBe('payload must be a CBOR map');
    expect(coseRefused([protectedHeader, unprotected, Buffer.from([0xa1]), signature])).toMatch(/^payload is not valid CBOR: /);
  });

  it('refuses a signature of other than 96 bytes', () => {
    for (const size of [0, 64, 95, 97, 104]) {
      expect(coseRefused([protectedHeader, unprotected, payload, Buffer.alloc(size)])).toBe(`signature must be 96 bytes (ES384 r||s), got ${size} bytes`);
    }
  });
});
