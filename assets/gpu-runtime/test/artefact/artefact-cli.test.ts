/**
 * `egpu artefact` as a user runs it: real processes (tsx on the CLI source), real files.
 * KMS cannot be mocked across a process boundary, so sealing and opening themselves are
 * tested in-process (artefact-kms.test.ts); here: help, usage errors, unreadable inputs.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..', '..');
const TSX = path.join(REPO_ROOT, 'node_modules', '.bin', 'tsx');
const CLI = path.join(REPO_ROOT, 'assets', 'gpu-runtime', 'src', 'cli.ts');

const work = mkdtempSync(path.join(tmpdir(), 'egpu-artefact-cli-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function egpu(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(TSX, [CLI, ...args], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    timeout: 30_000,
    // No credentials or region from the machine running the tests: nothing here may reach AWS.
    env: { PATH: process.env.PATH, HOME: work, AWS_EC2_METADATA_DISABLED: 'true' },
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('egpu artefact (a real process)', () => {
  it('lists seal and open under the group\'s help', () => {
    const result = egpu('artefact', '--help');
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/egpu artefact seal\s+Encrypt a model artefact/);
    expect(result.stdout).toMatch(/egpu artefact open\s+Decrypt a sealed artefact/);
  });

  it('prints the options of seal and open with --help', () => {
    const seal = egpu('artefact', 'seal', '--help');
    expect(seal.status).toBe(0);
    expect(seal.stdout).toContain('Usage: egpu artefact seal [options]');
    for (const option of ['--key-id ID', '--in FILE', '--out FILE', '--context KEY=VALUE', '--region R', '--help']) {
      expect(seal.stdout).toContain(option);
    }
    const open = egpu('artefact', 'open', '--help');
    expect(open.status).toBe(0);
    for (const option of ['--in FILE', '--out FILE', '--recipient-key FILE', '--attestation-doc FILE', '--region R']) {
      expect(open.stdout).toContain(option);
    }
  });

  it('exits 2 with the usage on a missing or unknown option', () => {
    const missing = egpu('artefact', 'seal', '--in', 'x', '--out', 'y');
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/^egpu artefact seal: --key-id is required\nUsage: egpu artefact seal/);
    const unknown = egpu('artefact', 'open', '--in', 'x', '--bogus');
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toContain("Unknown option '--bogus'");
    const noRecipient = egpu('artefact', 'open', '--in', 'x', '--out', 'y', '--attestation-doc', 'z');
    expect(noRecipient.status).toBe(2);
    expect(noRecipient.stderr).toContain('--recipient-key is required');
  });

  it('exits 1 naming the file when an input cannot be read, and writes nothing', () => {
    const out = path.join(work, 'out.egpa');
    const seal = egpu('artefact', 'seal', '--key-id', 'alias/models', '--in', path.join(work, 'missing.bin'), '--out', out, '--region', 'eu-west-1');
    expect(seal.status).toBe(1);
    expect(seal.stderr).toBe(`egpu artefact seal: INPUT: cannot read ${path.join(work, 'missing.bin')}: ENOENT\n`);
    const open = egpu('artefact', 'open', '--in', 'a', '--out', out, '--recipient-key', path.join(work, 'missing.pem'), '--attestation-doc', 'd', '--any-artefact');
    expect(open.status).toBe(1);
    expect(open.stderr).toContain(`INPUT: cannot read ${path.join(work, 'missing.pem')}: ENOENT`);
    expect(existsSync(out)).toBe(false);
  });
});
