import { X509Certificate } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readCertificate } from '../../src/attestation/certificate';
import { parseAttestationDocument } from '../../src/attestation/document';
import { SimulatedNsm } from '../../src/attestation/simulated-nsm';
import { MAX_CLOCK_AHEAD_MS, verifyAttestationDocument } from '../../src/attestation/verify';
import { AWS_DOCUMENT, AWS_FACTS, buildChain, decodeDocument, refusal, signedDocument, T0, withPayload } from './helpers';

const nsm = SimulatedNsm.create();
const dirs: string[] = [];
afterAll(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

function tempDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'egpu-nsm-'));
  dirs.push(dir);
  return dir;
}

describe('simulated NSM documents', () => {
  it('verify under the NSM\'s own root, given as a certificate or as its PEM', () => {
    const pcr0 = 'ab'.repeat(48);
    const document = nsm.attest({ pcrs: { 0: pcr0, 8: Buffer.alloc(48, 8) }, publicKey: Buffer.from('key'), userData: Buffer.from('data'), nonce: Buffer.from('nonce') });
    const verified = verifyAttestationDocument(document, { root: new X509Certificate(nsm.rootPem), expectedNonce: Buffer.from('nonce'), expectedPcrs: { 0: pcr0 } });
    expect(verified.moduleId).toBe(nsm.moduleId);
    expect(verified.pcrs[8]).toBe('08'.repeat(48));
    expect(verified.publicKey?.toString()).toBe('key');
    expect(verified.userData?.toString()).toBe('data');
  });

  it('are refused as STALE when older than maxAgeMs at the verification time, or too far ahead of it', () => {
    const made = new Date(Math.floor(Date.now() / 1000 + 120) * 1000); // ahead, so every `at` below is within the simulated certificates' validity
    const document = nsm.attest({ timestamp: made });
    const root = nsm.rootCertificate;
    const later = (ms: number) => new Date(made.getTime() + ms);
    verifyAttestationDocument(document, { root, at: later(60_000), maxAgeMs: 60_000 });
    expect(refusal(() => verifyAttestationDocument(document, { root, at: later(60_001), maxAgeMs: 60_000 }), 'STALE'))
      .toBe(`the document was made at ${made.toISOString()}, 60001 ms before the verification time ${later(60_001).toISOString()}; at most 60000 ms before (or ${MAX_CLOCK_AHEAD_MS} ms after) is accepted`);
    verifyAttestationDocument(document, { root, at: later(-MAX_CLOCK_AHEAD_MS), maxAgeMs: 60_000 });
    expect(refusal(() => verifyAttestationDocument(document, { root, at: later(-MAX_CLOCK_AHEAD_MS - 1), maxAgeMs: 60_000 }), 'STALE')).toMatch(/ms after the verification time/);
    verifyAttestationDocument(document, { root, at: later(60_001) }); // unchecked without maxAgeMs
    for (const maxAgeMs of [Number.NaN, -1, Number.POSITIVE_INFINITY]) {
      expect(() => verifyAttestationDocument(document, { root, at: later(60_001), maxAgeMs })).toThrow(/`maxAgeMs` must be a finite number of milliseconds/);
    }
    expect(() => verifyAttestationDocument(document, { root, at: new Date(Number.NaN) })).toThrow(/`at` is an invalid Date/);
  });

  it('are never accepted under the AWS root, at any time', () => {
    const document = nsm.attest();
    refusal(() => verifyAttestationDocument(document), 'ROOT_MISMATCH');
    refusal(() => verifyAttestationDocument(document, { root: 'aws', at: new Date(parseAttestationDocument(document).timestamp) }), 'ROOT_MISMATCH');
  });

  it('are refused under another simulated NSM\'s root', () => {
    refusal(() => verifyAttestationDocument(nsm.attest(), { root: SimulatedNsm.create().rootCertificate }), 'ROOT_MISMATCH');
  });

  it('cannot borrow the AWS root: a forged chain under it breaks at the first forged certificate', () => {
    const awsRoot = parseAttestationDocument(AWS_DOCUMENT).cabundle[0];
    const forged = withPayload(nsm.attest(), (payload) => payload.set('cabundle', [awsRoot, ...(payload.get('cabundle') as Buffer[]).slice(1)]));
    expect(refusal(() => verifyAttestationDocument(forged), 'CHAIN')).toBe('cabundle[1] (egpu simulated Nitro intermediate) was not issued by cabundle[0] (aws.nitro-enclaves)');
  });

  it('the AWS document\'s claims re-signed under another root are refused under the AWS root', () => {
    const aws = parseAttestationDocument(AWS_DOCUMENT);
    const chain = buildChain();
    const resigned = signedDocument(chain, { moduleId: aws.moduleId, pcrs: aws.pcrs, nonce: aws.nonce, userData: aws.userData, publicKey: aws.publicKey, timestamp: T0.getTime() });
    refusal(() => verifyAttestationDocument(resigned, { root: 'aws', at: T0 }), 'ROOT_MISMATCH');
    expect(verifyAttestationDocument(resigned, { root: chain.root, at: T0 }).pcrs[3]).toBe(AWS_FACTS.pcr3);
  });

  it('have exactly the AWS format', () => {
    const document = nsm.attest();
    expect(document[0]).toBe(0x84); // untagged, as the NSM returns it
    const { parts, payload } = decodeDocument(document);
    expect((parts[0] as Buffer).toString('hex')).toBe('a1013822');
    expect(parts[1]).toEqual(new Map());
    expect([...payload.keys()]).toEqual([...decodeDocument(AWS_DOCUMENT).payload.keys()]);
    expect(payload.get('module_id')).toMatch(/^i-[0-9a-f]{17}-enc[0-9a-f]{16}$/);
    expect(payload.get('digest')).toBe('SHA384');
    expect([...(payload.get('pcrs') as Map<number, Buffer>)]).toEqual(Array.from({ length: 16 }, (_, i) => [i, Buffer.alloc(48)]));
    expect([payload.get('public_key'), payload.get('user_data'), payload.get('nonce')]).toEqual([null, null, null]);
    const cabundle = payload.get('cabundle') as Buffer[];
    expect(cabundle).toHaveLength(2);
    expect(cabundle[0].equals(nsm.rootCertificate.raw)).toBe(true);
  });

  it('are signed by P-384 certificates with the constraints a Nitro chain has', () => {
    const doc = parseAttestationDocument(nsm.attest());
    const [root, intermediate] = doc.cabundle.map((der, i) => readCertificate(der, `cabundle[${i}]`));
    const leaf = readCertificate(doc.certificate, 'certificate');
    expect([root.basicConstraints?.cA, root.basicConstraints?.pathLenConstraint]).toEqual([true, 1]);
    expect([intermediate.basicConstraints?.cA, intermediate.basicConstraints?.pathLenConstraint]).toEqual([true, 0]);
    expect(leaf.basicConstraints?.cA).toBe(false);
    expect(leaf.keyUsage).toBe(1); // digitalSignature only
    expect(leaf.x509.subject).toBe(`CN=${nsm.moduleId}.simulated`);
    expect(leaf.publicKey.asymmetricKeyDetails?.namedCurve).toBe('secp384r1');
    expect(leaf.notAfter.getTime() - leaf.notBefore.getTime()).toBe(3 * 3600_000 + 60_000);
  });

  it('made at another time are signed by a leaf valid then', () => {
    const created = new Date('2031-05-01T12:00:00Z');
    const simulated = SimulatedNsm.create({ now: created });
    const first = simulated.attest({ timestamp: created });
    const later = new Date(created.getTime() + 24 * 3600_000);
    const second = simulated.attest({ timestamp: later });
    expect(verifyAttestationDocument(first, { root: simulated.rootCertificate, at: created }).timestamp).toEqual(created);
    expect(verifyAttestationDocument(second, { root: simulated.rootCertificate, at: later }).moduleId).toBe(simulated.moduleId);
    expect(parseAttestationDocument(first).certificate.equals(parseAttestationDocument(second).certificate)).toBe(false);
    refusal(() => verifyAttestationDocument(first, { root: simulated.rootCertificate, at: later }), 'EXPIRED');
  });
});

describe('simulated NSM state', () => {
  it('saves root and keys as PEM (keys mode 0600) and loads them as a new enclave under the same root', () => {
    const dir = tempDir();
    nsm.save(dir);
    expect(readFileSync(path.join(dir, 'root.pem'), 'utf8')).toBe(nsm.rootPem);
    for (const key of ['root.key.pem', 'intermediate.key.pem']) {
      expect(statSync(path.join(dir, key)).mode & 0o777).toBe(0o600);
      expect(readFileSync(path.join(dir, key), 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    }
    const loaded = SimulatedNsm.load(dir);
    expect(loaded.rootPem).toBe(nsm.rootPem);
    expect(loaded.moduleId).not.toBe(nsm.moduleId);
    verifyAttestationDocument(loaded.attest(), { root: nsm.rootCertificate });
  });

  it('never overwrites saved state', () => {
    const dir = tempDir();
    nsm.save(dir);
    expect(() => SimulatedNsm.create().save(dir)).toThrow(/SIMULATED_NSM_STATE: .*cannot save: EEXIST/);
    expect(SimulatedNsm.load(dir).rootPem).toBe(nsm.rootPem);
  });

  it('refuses a private key others can read', () => {
    const dir = tempDir();
    nsm.save(dir);
    chmodSync(path.join(dir, 'intermediate.key.pem'), 0o644);
    expect(() => SimulatedNsm.load(dir)).toThrow(/SIMULATED_NSM_STATE: .*intermediate\.key\.pem is accessible to group or others \(mode 644\)/);
  });

  it('refuses keys that are not their certificates\' and missing files', () => {
    const dir = tempDir();
    nsm.save(dir);
    renameSync(path.join(dir, 'root.key.pem'), path.join(dir, 'swap'));
    renameSync(path.join(dir, 'intermediate.key.pem'), path.join(dir, 'root.key.pem'));
    renameSync(path.join(dir, 'swap'), path.join(dir, 'intermediate.key.pem'));
    expect(() => SimulatedNsm.load(dir)).toThrow(/root\.key\.pem is not the key of root\.pem/);
    expect(() => SimulatedNsm.load(path.join(dir, 'absent'))).toThrow(/SIMULATED_NSM_STATE: .*cannot read the root: ENOENT/);
  });
});
