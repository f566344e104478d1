/**
 * `egpu attest` as a user runs it: real processes (tsx on the CLI source), real files.
 */
import { spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseAttestationDocument } from '../../src/attestation/document';
import { AWS_DOCUMENT, AWS_FACTS, AWS_VECTOR_PATH, REPO_ROOT } from './helpers';

const TSX = path.join(REPO_ROOT, 'node_modules', '.bin', 'tsx');
const CLI = path.join(REPO_ROOT, 'assets', 'gpu-runtime', 'src', 'cli.ts');
const AT = '2024-09-17T04:30:41.800Z';

const work = mkdtempSync(path.join(tmpdir(), 'egpu-attest-cli-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function egpu(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(TSX, [CLI, ...args], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 30_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('egpu attest verify', () => {
  it('verifies the AWS document at its timestamp and prints one JSON object', () => {
    const result = egpu('attest', 'verify', '--doc', AWS_VECTOR_PATH, '--at', AT, '--json', '--nonce', AWS_FACTS.nonce, '--expect-pcr', `3=${AWS_FACTS.pcr3}`, '--expect-pcr', `4=${AWS_FACTS.pcr4.toUpperCase()}`);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(result.stdout.trim().split('\n')).toHaveLength(1);
    const json = JSON.parse(result.stdout);
    expect(Object.keys(json)).toEqual(['moduleId', 'timestamp', 'digest', 'pcrs', 'publicKey', 'userData', 'nonce']);
    expect(json).toMatchObject({ moduleId: AWS_FACTS.moduleId, timestamp: AT, digest: 'SHA384', nonce: AWS_FACTS.nonce, publicKey: '64756d6d79' });
    expect(Object.keys(json.pcrs)).toEqual(Array.from({ length: 16 }, (_, i) => String(i)));
    expect(json.pcrs['3']).toBe(AWS_FACTS.pcr3);
    expect(json.userData).toBe(parseAttestationDocument(AWS_DOCUMENT).userData?.toString('hex'));
  });

  it('reads raw CBOR too, and prints a summary without --json', () => {
    const raw = path.join(work, 'aws.cbor');
    writeFileSync(raw, AWS_DOCUMENT);
    const result = egpu('attest', 'verify', '--doc', raw, '--at', AT, '--root', 'aws');
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(new RegExp(`^verified: ${AWS_FACTS.moduleId}, made ${AT}, digest SHA384\\n`));
    expect(result.stdout).toContain(`PCR3  ${AWS_FACTS.pcr3}`);
  });

  it('refuses it now, exit 1, the reason on stderr and nothing on stdout', () => {
    const result = egpu('attest', 'verify', '--doc', AWS_VECTOR_PATH, '--json');
    expect(result.status).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(/^egpu attest verify: EXPIRED: cabundle\[1\] .* expired at 2024-10-04T14:32:55\.000Z .*\n$/);
  });

  it('refuses another nonce and another PCR with exit 1', () => {
    const nonce = egpu('attest', 'verify', '--doc', AWS_VECTOR_PATH, '--at', AT, '--nonce', '00');
    expect([nonce.status, nonce.stderr]).toEqual([1, `egpu attest verify: NONCE_MISMATCH: nonce is ${AWS_FACTS.nonce}, expected 00\n`]);
    const pcr = egpu('attest', 'verify', '--doc', AWS_VECTOR_PATH, '--at', AT, '--expect-pcr', `0=${'11'.repeat(48)}`);
    expect(pcr.status).toBe(1);
    expect(pcr.stderr).toMatch(/^egpu attest verify: PCR_MISMATCH: PCR0 is 0{96}, expected (11){48}\n$/);
  });

  it('refuses a modified document and a file that is no document with exit 1', () => {
    const modified = path.join(work, 'modified.cbor');
    writeFileSync(modified, Buffer.concat([AWS_DOCUMENT.subarray(0, -1), Buffer.from([AWS_DOCUMENT[AWS_DOCUMENT.length - 1] ^ 1])]));
    expect(egpu('attest', 'verify', '--doc', modified, '--at', AT).stderr).toMatch(/^egpu attest verify: SIGNATURE: /);
    const text = path.join(work, 'text.txt');
    writeFileSync(text, 'hello, world');
    const result = egpu('attest', 'verify', '--doc', text);
    expect([result.status, result.stderr]).toEqual([1, `egpu attest verify: MALFORMED: ${text} is neither a CBOR COSE_Sign1 nor base64 of one\n`]);
    expect(egpu('attest', 'verify', '--doc', path.join(work, 'absent')).stderr).toMatch(/INPUT: cannot read .*absent: ENOENT/);
  });

  it('refuses wrong usage with exit 2 and the usage', () => {
    for (const args of [[], ['--at', 'yesterday'], ['--at', '2024-09-17T04:30:41'], ['--nonce', 'xyz'], ['--expect-pcr', '3=00'], ['--expect-pcr', `32=${'00'.repeat(48)}`], ['--unknown']]) {
      const result = egpu('attest', 'verify', ...(args.length > 0 ? ['--doc', AWS_VECTOR_PATH] : []), ...args);
      expect(result.status, args.join(' ')).toBe(2);
      expect(result.stderr).toContain('Usage: egpu attest verify [options]');
    }
  });

  it('has --help', () => {
    const result = egpu('attest', 'verify', '--help');
    expect(result.status).toBe(0);
    for (const option of ['--doc FILE', '--at ISO8601|now', '--root aws|FILE.pem', '--nonce HEX', '--expect-pcr N=HEX', '--json']) {
      expect(result.stdout).toContain(option);
    }
  });
});

describe('egpu attest simulate', () => {
  it('creates the NSM on first use, and its documents verify only under its root', () => {
    const state = path.join(work, 'nsm');
    const out = path.join(work, 'sim.cbor');
    const keyFile = path.join(work, 'enclave.pub.pem');
    const enclaveKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey;
    writeFileSync(keyFile, enclaveKey.export({ type: 'spki', format: 'pem' }));
    const pcr0 = 'ab'.repeat(48);
    const made = egpu('attest', 'simulate', '--state', state, '--out', out, '--pcr', `0=${pcr0}`, '--public-key', keyFile, '--user-data', 'cafe', '--nonce', '0102');
    expect(made.stderr).toBe('');
    expect(made.status).toBe(0);
    const rootPath = path.join(state, 'root.pem');
    expect(made.stdout).toContain(`root: ${rootPath}`);
    expect(statSync(path.join(state, 'root.key.pem')).mode & 0o777).toBe(0o600);

    const verified = egpu('attest', 'verify', '--doc', out, '--root', rootPath, '--nonce', '0102', '--expect-pcr', `0=${pcr0}`, '--json');
    expect(verified.status).toBe(0);
    const json = JSON.parse(verified.stdout);
    expect(json).toMatchObject({ userData: 'cafe', nonce: '0102', publicKey: enclaveKey.export({ type: 'spki', format: 'der' }).toString('hex') });
    expect(json.pcrs['0']).toBe(pcr0);

    const underAws = egpu('attest', 'verify', '--doc', out);
    expect(underAws.status).toBe(1);
    expect(underAws.stderr).toMatch(/^egpu attest verify: ROOT_MISMATCH: /);

    const rootBefore = readFileSync(rootPath, 'utf8');
    expect(egpu('attest', 'simulate', '--state', state, '--out', out).status).toBe(0);
    expect(readFileSync(rootPath, 'utf8')).toBe(rootBefore);
    expect(egpu('attest', 'verify', '--doc', out, '--root', rootPath).status).toBe(0);
  });

  it('refuses an oversized user_data with exit 2', () => {
    const result = egpu('attest', 'simulate', '--state', path.join(work, 'nsm2'), '--out', path.join(work, 'x'), '--user-data', '00'.repeat(513));
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(/--user-data must be at most 512 bytes of hex/);
  });
});
