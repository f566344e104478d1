import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseAttestationDocument } from '../../src/attestation/document';
import { awsNitroRootG1 } from '../../src/attestation/root';
import { AWS_NITRO_ROOT_G1_SHA256 } from '../../src/attestation/roots/aws-nitro-root-g1';
import { verifyAttestationDocument } from '../../src/attestation/verify';
import { AWS_DOCUMENT, AWS_FACTS, refusal } from './helpers';

const at = AWS_FACTS.timestamp;

describe('the genuine AWS document (../shared/test-vectors)', () => {
  it('verifies at its own timestamp under the AWS root, and says what it attests', () => {
    const verified = verifyAttestationDocument(AWS_DOCUMENT, { root: 'aws', at });
    expect(verified.moduleId).toBe(AWS_FACTS.moduleId);
    expect(verified.timestamp.toISOString()).toBe('2024-09-17T04:30:41.800Z');
    expect(verified.digest).toBe('SHA384');
    expect(Object.keys(verified.pcrs)).toHaveLength(16);
    for (const index of [0, 1, 2]) expect(verified.pcrs[index]).toBe('00'.repeat(48));
    expect(verified.pcrs[3]).toBe(AWS_FACTS.pcr3);
    expect(verified.pcrs[4]).toBe(AWS_FACTS.pcr4);
    expect(verified.nonce?.toString('hex')).toBe(AWS_FACTS.nonce);
    expect(verified.publicKey?.length).toBeGreaterThan(0);
    expect(verified.userData?.length).toBeGreaterThan(0);
    expect(verified.certificate.subject).toContain(AWS_FACTS.moduleId);
  });

  it('uses the AWS root by default', () => {
    expect(verifyAttestationDocument(AWS_DOCUMENT, { at }).moduleId).toBe(AWS_FACTS.moduleId);
  });

  it('is refused now: its certificates have expired', () => {
    expect(refusal(() => verifyAttestationDocument(AWS_DOCUMENT), 'EXPIRED')).toMatch(/^cabundle\[1\] .* expired at 2024-10-04T14:32:55\.000Z/);
  });

  it('is accepted on the first and last second of its leaf, and refused just outside them', () => {
    verifyAttestationDocument(AWS_DOCUMENT, { at: AWS_FACTS.leafNotBefore });
    verifyAttestationDocument(AWS_DOCUMENT, { at: AWS_FACTS.leafNotAfter });
    const after = new Date(AWS_FACTS.leafNotAfter.getTime() + 1);
    expect(refusal(() => verifyAttestationDocument(AWS_DOCUMENT, { at: after }), 'EXPIRED')).toMatch(/^certificate .* expired at 2024-09-17T07:30:41\.000Z/);
    const before = new Date(AWS_FACTS.leafNotBefore.getTime() - 1);
    expect(refusal(() => verifyAttestationDocument(AWS_DOCUMENT, { at: before }), 'NOT_YET_VALID')).toMatch(/^certificate .* not valid before 2024-09-17T04:30:38\.000Z/);
  });

  it('refuses an invalid `at` instead of passing every validity check', () => {
    expect(() => verifyAttestationDocument(AWS_DOCUMENT, { at: new Date('not a date') })).toThrow(TypeError);
  });

  it('passes when the expected nonce and PCRs are its own (PCR hex in either case)', () => {
    verifyAttestationDocument(AWS_DOCUMENT, {
      at,
      expectedNonce: Buffer.from(AWS_FACTS.nonce, 'hex'),
      expectedPcrs: { 0: '00'.repeat(48), 3: AWS_FACTS.pcr3.toUpperCase(), 4: AWS_FACTS.pcr4 },
    });
  });

  it('is refused for another nonce', () => {
    const reason = refusal(() => verifyAttestationDocument(AWS_DOCUMENT, { at, expectedNonce: Buffer.from('00'.repeat(19) + '02', 'hex') }), 'NONCE_MISMATCH');
    expect(reason).toBe(`nonce is ${AWS_FACTS.nonce}, expected ${'00'.repeat(19)}02`);
    refusal(() => verifyAttestationDocument(AWS_DOCUMENT, { at, expectedNonce: Buffer.alloc(0) }), 'NONCE_MISMATCH');
  });

  it('is refused for other PCRs, naming the PCR', () => {
    const wrong = `${AWS_FACTS.pcr3.slice(0, -1)}e`;
    expect(refusal(() => verifyAttestationDocument(AWS_DOCUMENT, { at, expectedPcrs: { 3: wrong } }), 'PCR_MISMATCH'))
      .toBe(`PCR3 is ${AWS_FACTS.pcr3}, expected ${wrong}`);
    expect(refusal(() => verifyAttestationDocument(AWS_DOCUMENT, { at, expectedPcrs: { 0: 'ff'.repeat(48) } }), 'PCR_MISMATCH')).toMatch(/^PCR0 is 0{96}, expected/);
    expect(refusal(() => verifyAttestationDocument(AWS_DOCUMENT, { at, expectedPcrs: { 20: '00'.repeat(48) } }), 'PCR_MISMATCH')).toMatch(/^PCR20 is not in the document/);
  });

  it('parses to the exact signed bytes', () => {
    const doc = parseAttestationDocument(AWS_DOCUMENT);
    expect(doc.protectedHeader.toString('hex')).toBe('a1013822');
    expect(AWS_DOCUMENT.indexOf(doc.payload)).toBeGreaterThan(0);
    expect(doc.signature).toHaveLength(96);
    expect(doc.cabundle).toHaveLength(4);
    expect(createHash('sha256').update(doc.cabundle[0]).digest('hex')).toBe(AWS_NITRO_ROOT_G1_SHA256);
  });

  it('the embedded AWS root is the one whose fingerprint AWS publishes', () => {
    expect(createHash('sha256').update(awsNitroRootG1().raw).digest('hex')).toBe('641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b');
  });
});

describe('COSE_Sign1 framing', () => {
  it('accepts the tagged form (tag 18) as well as the untagged one', () => {
    const tagged = Buffer.concat([Buffer.from([0xd2]), AWS_DOCUMENT]);
    expect(verifyAttestationDocument(tagged, { at }).moduleId).toBe(AWS_FACTS.moduleId);
  });

  it.each([
    ['tag 17 (COSE_Mac0)', [0xd1]],
    ['tag 98 (COSE_Sign)', [0xd8, 0x62]],
    ['tag 18 written in two bytes', [0xd8, 0x12]],
    ['tag 18 twice', [0xd2, 0xd2]],
  ])('refuses another tag: %s', (_, prefix) => {
    refusal(() => verifyAttestationDocument(Buffer.concat([Buffer.from(prefix), AWS_DOCUMENT]), { at }), 'MALFORMED');
  });

  it('refuses every truncation of the document', () => {
    for (let length = 0; length < AWS_DOCUMENT.length; length++) {
      refusal(() => verifyAttestationDocument(AWS_DOCUMENT.subarray(0, length), { at }), 'MALFORMED');
    }
  });

  it('refuses trailing bytes', () => {
    expect(refusal(() => verifyAttestationDocument(Buffer.concat([AWS_DOCUMENT, Buffer.from([0])]), { at }), 'MALFORMED')).toMatch(/1 bytes follow/);
  });

  it('refuses a document over 16 KiB before decoding it', () => {
    expect(refusal(() => verifyAttestationDocument(Buffer.alloc(16 * 1024 + 1, 0x84), { at }), 'MALFORMED')).toBe('document is 16385 bytes, at most 16384');
  });
});
