/**
 * Every region of the genuine AWS document, modified, must be refused, and with the code of
 * the check that guards that region. Certificates are sampled (every few bytes, plus their
 * last byte); every other region is changed byte by byte.
 */
import { describe, expect, it } from 'vitest';
import { decodeCbor, encodeCbor } from '../../../../lib/shared/cbor';
import { AttestationErrorCode } from '../../src/attestation/attestation-error';
import { parseAttestationDocument } from '../../src/attestation/document';
import { verifyAttestationDocument } from '../../src/attestation/verify';
import { AWS_DOCUMENT, AWS_FACTS, flipped, offsetOf, refusal, valueRange, withPayload } from './helpers';

const at = AWS_FACTS.timestamp;
const doc = parseAttestationDocument(AWS_DOCUMENT);

/** The code thrown for the document with byte `offset` changed; fails the test if it verifies. */
function codeAfterFlip(offset: number, mask = 0x01): AttestationErrorCode {
  try {
    verifyAttestationDocument(flipped(AWS_DOCUMENT, offset, mask), { at });
  } catch (error) {
    return (error as { code: AttestationErrorCode }).code;
  }
  throw new Error(`a change at byte ${offset} was accepted`);
}

function range(start: number, end: number, step = 1): number[] {
  const offsets: number[] = [];
  for (let i = start; i < end; i += step) offsets.push(i);
  return offsets;
}

/** Offsets of a DER certificate in the document: every 11th byte and the last. */
function sampledCertificate(der: Buffer): number[] {
  const start = offsetOf(AWS_DOCUMENT, der);
  return [...range(start, start + der.length, 11), start + der.length - 1];
}

const payloadStart = offsetOf(AWS_DOCUMENT, doc.payload);
const signatureStart = offsetOf(AWS_DOCUMENT, doc.signature);

const regions: Array<[string, number[], AttestationErrorCode[]]> = [
  ['COSE array head', [0], ['MALFORMED']],
  ['protected header (with its length)', range(1, 6), ['MALFORMED']],
  ['unprotected header', [6], ['MALFORMED']],
  ['payload length', range(7, payloadStart), ['MALFORMED']],
  ['payload map head', [payloadStart], ['MALFORMED']],
  ['payload field name', all(keyRange('user_data')), ['MALFORMED']],
  // A byte of its ASCII made 0x80 or above is no longer UTF-8: MALFORMED before the signature.
  ['module_id', all(valueRange(AWS_DOCUMENT, 'module_id', doc.moduleId)), ['SIGNATURE', 'MALFORMED']],
  ['digest', all(valueRange(AWS_DOCUMENT, 'digest', 'SHA384')), ['MALFORMED']],
  // Its low 6 bytes: a change in the top 2 can pass 2^53 ms, which is MALFORMED instead.
  ['timestamp', all(valueRange(AWS_DOCUMENT, 'timestamp', doc.timestamp)).slice(2), ['SIGNATURE']],
  ['PCR0 value', all(valueRange(AWS_DOCUMENT, 0, doc.pcrs.get(0)!)), ['SIGNATURE']],
  ['PCR3 value', all(valueRange(AWS_DOCUMENT, 3, doc.pcrs.get(3)!)), ['SIGNATURE']],
  ['PCR15 value', all(valueRange(AWS_DOCUMENT, 15, doc.pcrs.get(15)!)), ['SIGNATURE']],
  ['public_key', all(valueRange(AWS_DOCUMENT, 'public_key', doc.publicKey!)), ['SIGNATURE']],
  ['user_data', all(valueRange(AWS_DOCUMENT, 'user_data', doc.userData!)), ['SIGNATURE']],
  ['nonce', all(valueRange(AWS_DOCUMENT, 'nonce', doc.nonce!)), ['SIGNATURE']],
  ['cabundle[0] (the root)', sampledCertificate(doc.cabundle[0]), ['ROOT_MISMATCH']],
  ['cabundle[1]', sampledCertificate(doc.cabundle[1]), ['CHAIN', 'MALFORMED']],
  ['cabundle[2]', sampledCertificate(doc.cabundle[2]), ['CHAIN', 'MALFORMED']],
  ['cabundle[3]', sampledCertificate(doc.cabundle[3]), ['CHAIN', 'MALFORMED']],
  ['certificate (the leaf)', sampledCertificate(doc.certificate), ['CHAIN', 'MALFORMED']],
  ['signature', range(signatureStart, AWS_DOCUMENT.length), ['SIGNATURE']],
];

function all({ start, end }: { start: number; end: number }): number[] {
  return range(start, end);
}

/** Where a payload key's text is (after its one-byte CBOR head). */
function keyRange(key: string): { start: number; end: number } {
  const start = offsetOf(AWS_DOCUMENT, encodeCbor(key)) + 1;
  return { start, end: start + key.length };
}

describe('a modified AWS document', () => {
  it('the regions are where the document puts them', () => {
    expect(AWS_DOCUMENT.subarray(1, 6).toString('hex')).toBe('44a1013822');
    const key = keyRange('user_data');
    expect(AWS_DOCUMENT.subarray(key.start, key.end).toString()).toBe('user_data');
    expect(signatureStart).toBe(AWS_DOCUMENT.length - 96);
  });

  it.each(regions)('is refused when its %s changes', (_, offsets, codes) => {
    expect(offsets.length).toBeGreaterThan(0);
    for (const offset of offsets) {
      for (const mask of [0x01, 0x80]) {
        const code = codeAfterFlip(offset, mask);
        expect(codes, `byte ${offset} ^ ${mask}`).toContain(code);
      }
    }
  });

  it('names the certificate whose signature no longer verifies', () => {
    for (const [index, der] of doc.cabundle.entries()) {
      if (index === 0) continue;
      const last = offsetOf(AWS_DOCUMENT, der) + der.length - 1;
      expect(refusal(() => verifyAttestationDocument(flipped(AWS_DOCUMENT, last), { at }), 'CHAIN'))
        .toMatch(new RegExp(`^cabundle\\[${index}\\] .* is not signed by cabundle\\[${index - 1}\\]`));
    }
    const leafLast = offsetOf(AWS_DOCUMENT, doc.certificate) + doc.certificate.length - 1;
    expect(refusal(() => verifyAttestationDocument(flipped(AWS_DOCUMENT, leafLast), { at }), 'CHAIN'))
      .toMatch(/^certificate .* is not signed by cabundle\[3\]/);
  });

  it('is refused with its certificates reordered or one left out', () => {
    const reorder = (cabundle: Buffer[]) => withPayload(AWS_DOCUMENT, (payload) => payload.set('cabundle', cabundle));
    const [root, regional, zonal, instance] = doc.cabundle;
    expect(refusal(() => verifyAttestationDocument(reorder([root, zonal, regional, instance]), { at }), 'CHAIN')).toMatch(/^cabundle\[1\] .* was not issued by cabundle\[0\]/);
    expect(refusal(() => verifyAttestationDocument(reorder([root, regional, instance]), { at }), 'CHAIN')).toMatch(/^cabundle\[2\] .* was not issued by cabundle\[1\]/);
    refusal(() => verifyAttestationDocument(reorder([regional, zonal, instance]), { at }), 'ROOT_MISMATCH');
  });
});

/** The document with bytes [start, end) replaced by `bytes`. */
function spliced(start: number, end: number, bytes: string): Buffer {
  return Buffer.concat([AWS_DOCUMENT.subarray(0, start), Buffer.from(bytes, 'hex'), AWS_DOCUMENT.subarray(end)]);
}

describe('the AWS document in another encoding of the same values', () => {
  // Each decodes to exactly the same COSE_Sign1 as the genuine one, and its signature covers
  // only the payload's bytes: without a canonical-encoding check each would verify.
  const payloadHead = AWS_DOCUMENT.subarray(7, payloadStart).toString('hex'); // 59 + 2 length bytes
  const variants: Array<[string, Buffer]> = [
    ['the protected header with a longer length head', spliced(1, 2, '5804')],
    ['the payload with a longer length head', spliced(7, payloadStart, `5a0000${payloadHead.slice(2)}`)],
    ['the payload behind a tag', spliced(7, 7, 'd818')],
    ['the signature with a longer length head', spliced(signatureStart - 2, signatureStart, '590060')],
    ['the unprotected map behind a tag', spliced(6, 6, 'c0')],
  ];

  it.each(variants)('is refused with %s', (_, variant) => {
    expect(variant.equals(AWS_DOCUMENT)).toBe(false);
    expect(decodeCbor(variant)).toEqual(decodeCbor(AWS_DOCUMENT));
    expect(refusal(() => verifyAttestationDocument(variant, { at }), 'MALFORMED')).toMatch(/^the COSE_Sign1 is not in its canonical encoding/);
  });

  it('is refused with its payload in another encoding, before any signature is checked', () => {
    const payload = AWS_DOCUMENT.subarray(payloadStart, signatureStart - 2);
    const key = encodeCbor('nonce');
    const longerKey = Buffer.concat([Buffer.from([0x78, 5]), Buffer.from('nonce')]); // "nonce" with a 2-byte head
    const reencoded = Buffer.from(payload.toString('hex').replace(key.toString('hex'), longerKey.toString('hex')), 'hex');
    expect(decodeCbor(reencoded)).toEqual(decodeCbor(payload));
    const variant = encodeCbor([doc.protectedHeader, new Map(), reencoded, doc.signature]);
    expect(refusal(() => verifyAttestationDocument(variant, { at }), 'MALFORMED')).toMatch(/^payload is not in its canonical encoding/);
  });

  // ECDSA's one malleability: (r, n - s) is a valid signature of the same bytes whenever
  // (r, s) is, and AWS's signatures are not normalized, so it cannot be refused. The document
  // it makes says exactly what the genuine one says: identify a document by the SHA-384 of
  // its payload, never by its bytes.
  it('verifies with the twin (r, n - s) of its signature, as any ECDSA signature must', () => {
    const n = BigInt('0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973');
    const s = BigInt(`0x${doc.signature.subarray(48).toString('hex')}`);
    const twin = Buffer.from(AWS_DOCUMENT);
    Buffer.from((n - s).toString(16).padStart(96, '0'), 'hex').copy(twin, signatureStart + 48);
    expect(twin.equals(AWS_DOCUMENT)).toBe(false);
    const fields = ({ moduleId, timestamp, pcrs, publicKey, userData, nonce }: ReturnType<typeof verifyAttestationDocument>) => ({ moduleId, timestamp, pcrs, publicKey, userData, nonce });
    expect(fields(verifyAttestationDocument(twin, { at }))).toEqual(fields(verifyAttestationDocument(AWS_DOCUMENT, { at })));
  });
});
