/**
 * Chain rules on hand-built chains (root -> intermediate -> leaf, valid around T0), each
 * with one rule broken: the cases a genuine NSM never produces but a forger would try.
 */
import { generateKeyPairSync } from 'node:crypto';
import { OctetString } from '@peculiar/asn1-schema';
import { Extension, KeyUsageFlags } from '@peculiar/asn1-x509';
import { describe, expect, it } from 'vitest';
import { encodeCbor } from '../../../../lib/shared/cbor';
import { ES384_PROTECTED_HEADER } from '../../src/attestation/cose';
import { encodeAttestationPayload } from '../../src/attestation/document';
import { verifyAttestationDocument } from '../../src/attestation/verify';
import { buildChain, decodeDocument, refusal, signedDocument, T0, TestChain } from './helpers';

const HOUR = 3600_000;

function verifyAtT0(chain: TestChain, document = signedDocument(chain)) {
  return verifyAttestationDocument(document, { root: chain.root, at: T0 });
}

function privateExtension(critical: boolean): Extension {
  return new Extension({ extnID: '1.3.6.1.4.1.55555.1', critical, extnValue: new OctetString(Buffer.from([0x05, 0x00])) });
}

describe('certificate chain rules', () => {
  it('a well-formed chain verifies under its root', () => {
    const chain = buildChain();
    expect(verifyAtT0(chain).certificate.subject).toBe('CN=test leaf');
  });

  it('refuses a root that is not a CA', () => {
    expect(refusal(() => verifyAtT0(buildChain({ root: { ca: undefined } })), 'CONSTRAINTS'))
      .toBe('cabundle[0] (test root) issues certificates but is not a CA (BasicConstraints cA is not true)');
  });

  it('refuses an intermediate that is not a CA', () => {
    expect(refusal(() => verifyAtT0(buildChain({ intermediate: { ca: undefined } })), 'CONSTRAINTS'))
      .toBe('cabundle[1] (test intermediate) issues certificates but is not a CA (BasicConstraints cA is not true)');
  });

  it('refuses an intermediate without keyCertSign', () => {
    expect(refusal(() => verifyAtT0(buildChain({ intermediate: { keyUsage: KeyUsageFlags.digitalSignature | KeyUsageFlags.cRLSign } })), 'CONSTRAINTS'))
      .toBe('cabundle[1] (test intermediate) issues certificates but its KeyUsage lacks keyCertSign');
  });

  it('refuses a chain longer than a path length constraint allows', () => {
    expect(refusal(() => verifyAtT0(buildChain({ root: { ca: { pathLength: 0 } } })), 'CONSTRAINTS'))
      .toBe('cabundle[0] (test root) allows 0 CA certificates below it, the chain has 1');
  });

  it('refuses a leaf that is a CA', () => {
    expect(refusal(() => verifyAtT0(buildChain({ leaf: { ca: {} } })), 'CONSTRAINTS'))
      .toBe('certificate (test leaf) signs the document but is a CA (BasicConstraints cA is true)');
  });

  it('refuses a leaf without digitalSignature', () => {
    expect(refusal(() => verifyAtT0(buildChain({ leaf: { keyUsage: KeyUsageFlags.keyAgreement } })), 'CONSTRAINTS'))
      .toBe('certificate (test leaf) signs the document but its KeyUsage lacks digitalSignature');
  });

  it('refuses a leaf whose key is not P-384', () => {
    const chain = buildChain({ leafCurve: 'P-256' });
    const payload = encodeAttestationPayload({
      moduleId: 'i-1', digest: 'SHA384', timestamp: T0.getTime(), pcrs: new Map([[0, Buffer.alloc(48)]]),
      certificate: chain.leaf.raw, cabundle: chain.cabundle,
    });
    const document = encodeCbor([ES384_PROTECTED_HEADER, new Map(), payload, Buffer.alloc(96)]);
    expect(refusal(() => verifyAtT0(chain, document), 'CONSTRAINTS')).toBe('certificate (test leaf) key is not ECDSA P-384, which ES384 requires');
  });

  it('refuses an unknown critical extension, and ignores an unknown non-critical one', () => {
    expect(refusal(() => verifyAtT0(buildChain({ intermediate: { extensions: [privateExtension(true)] } })), 'CONSTRAINTS'))
      .toBe('cabundle[1] (test intermediate) has critical extension 1.3.6.1.4.1.55555.1, which this verifier does not process');
    verifyAtT0(buildChain({ intermediate: { extensions: [privateExtension(false)] } }));
  });

  it('checks the validity of every certificate, root included', () => {
    const expired = buildChain({ intermediate: { notBefore: new Date(T0.getTime() - 48 * HOUR), notAfter: new Date(T0.getTime() - HOUR) } });
    expect(refusal(() => verifyAtT0(expired), 'EXPIRED')).toMatch(/^cabundle\[1\] \(test intermediate\) expired at 2029-12-31T23:00:00\.000Z \(checked at 2030-01-01T00:00:00\.000Z\)$/);
    const early = buildChain({ root: { notBefore: new Date(T0.getTime() + HOUR) } });
    expect(refusal(() => verifyAtT0(early), 'NOT_YET_VALID')).toMatch(/^cabundle\[0\] \(test root\) is not valid before 2030-01-01T01:00:00\.000Z/);
  });

  it('refuses a leaf from an impostor intermediate of the same name', () => {
    const genuine = buildChain();
    const impostor = buildChain();
    const mixed: TestChain = { ...impostor, cabundle: genuine.cabundle, root: genuine.root };
    expect(refusal(() => verifyAtT0(mixed), 'CHAIN')).toMatch(/^certificate \(test leaf\) (was not issued by|is not signed by) cabundle\[1\]/);
  });

  it('refuses a chain with the intermediate left out', () => {
    const chain = buildChain();
    expect(refusal(() => verifyAtT0({ ...chain, cabundle: [chain.cabundle[0]] }), 'CHAIN'))
      .toBe('certificate (test leaf) was not issued by cabundle[0] (test root)');
  });

  it('refuses a certificate with trailing bytes, and one that is not a certificate', () => {
    const chain = buildChain();
    expect(refusal(() => verifyAtT0({ ...chain, cabundle: [chain.cabundle[0], Buffer.concat([chain.cabundle[1], Buffer.from([0])])] }), 'MALFORMED'))
      .toBe('cabundle[1] is not exactly one DER certificate');
    expect(refusal(() => verifyAtT0({ ...chain, cabundle: [chain.cabundle[0], Buffer.from('not DER')] }), 'MALFORMED'))
      .toMatch(/^cabundle\[1\] is not an X\.509 certificate/);
  });

  it('refuses a document signed by any key but the leaf\'s', () => {
    const chain = buildChain();
    const other = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey;
    expect(refusal(() => verifyAtT0(chain, signedDocument({ ...chain, leafKey: other })), 'SIGNATURE'))
      .toBe('the ES384 signature is not the leaf\'s (i-00000000000000000-enc0000000000000000) over this document');
  });

  it('verifies a document whose optional fields are null, as the NSM writes them', () => {
    const chain = buildChain();
    const verified = verifyAtT0(chain);
    expect(decodeDocument(signedDocument(chain)).payload.get('nonce')).toBeNull();
    expect([verified.publicKey, verified.userData, verified.nonce]).toEqual([undefined, undefined, undefined]);
  });
});
