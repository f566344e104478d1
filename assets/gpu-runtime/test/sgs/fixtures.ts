/**
 * Shared by the SGS tests: an enclave image (PCRs) and a simulated NSM, an sgs.json in a
 * temporary directory pointing at sockets there, and a way to wait for a condition without
 * timing anything.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { ImagePcrs } from '../../src/abe/key-schedule';
import { SimulatedNsm } from '../../src/attestation/simulated-nsm';
import { parseSgsConfig, SgsConfig } from '../../src/sgs/config';
import { SgsServer, SgsServerOptions } from '../../src/sgs/server';

export const REPO_ROOT = path.resolve(__dirname, '..', '..', '..', '..');
export const TSX = path.join(REPO_ROOT, 'node_modules', '.bin', 'tsx');
export const CLI = path.join(REPO_ROOT, 'assets', 'gpu-runtime', 'src', 'cli.ts');

export function sha384(text: string): Buffer {
  return createHash('sha384').update(text).digest();
}

/** The image SGS allows in these tests, and one it does not. */
export const IMAGE_PCRS: ImagePcrs = [sha384('sgs test image'), sha384('sgs test kernel'), sha384('sgs test application')];
export const OTHER_PCRS: ImagePcrs = [sha384('another image'), IMAGE_PCRS[1], IMAGE_PCRS[2]];
export const IMAGE_DIMENSION = IMAGE_PCRS[0].toString('hex').slice(0, 16);

/** A temporary directory for sockets, root certificate, logs; short, so unix socket paths fit. */
export class Workspace {
  readonly dir = mkdtempSync(path.join(tmpdir(), 'sgs-'));
  readonly enclaveSocket = path.join(this.dir, 'sgs.sock');
  readonly contextSocket = path.join(this.dir, 'ctx.sock');
  readonly kernelLog = path.join(this.dir, 'kernel-attestation.jsonl');
  readonly rootPath = path.join(this.dir, 'root.pem');

  constructor(readonly nsm: SimulatedNsm) {
    writeFileSync(this.rootPath, nsm.rootPem);
  }

  /** An sgs.json object for this workspace; `overrides` replace top-level fields. */
  configJson(overrides: Record<string, unknown> = {}): Record<string, unknown> {
    return {
      enclaveListen: `unix:${this.enclaveSocket}`,
      context: `unix:${this.contextSocket}`,
      root: this.rootPath,
      allowlist: [{ pcr0: IMAGE_PCRS[0].toString('hex'), pcr1: IMAGE_PCRS[1].toString('hex'), pcr2: IMAGE_PCRS[2].toString('hex') }],
      partitions: { default: { gpuShare: 1, memoryCapBytes: 64 * 1024 * 1024, queueBound: 16 } },
      maxInFlight: 4,
      deadlineMs: 30_000,
      drainTimeoutMs: 10_000,
      health: 'tcp:127.0.0.1:0',
      metrics: { enabled: false, flushIntervalMs: 60_000, maxBufferedData: 1000 },
      kernelAttestationLog: this.kernelLog,
      ...overrides,
    };
  }

  config(overrides: Record<string, unknown> = {}): SgsConfig {
    return parseSgsConfig(this.configJson(overrides), this.dir);
  }

  /** Writes sgs.json and returns its path. */
  writeConfig(overrides: Record<string, unknown> = {}): string {
    const file = path.join(this.dir, 'sgs.json');
    writeFileSync(file, JSON.stringify(this.configJson(overrides), null, 2));
    return file;
  }

  async startSgs(overrides: Record<string, unknown> = {}, options: SgsServerOptions = {}): Promise<SgsServer> {
    return SgsServer.start(this.config(overrides), { log: () => {}, ...options });
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * Resolves once `condition` holds, checking after each turn of the event loop (and every few
 * milliseconds). Not a timing assertion: the test's own timeout is the only limit.
 */
export async function until(condition: () => boolean, what = 'a condition'): Promise<void> {
  for (let turn = 0; !condition(); turn++) {
    await new Promise((resolve) => setTimeout(resolve, turn < 100 ? 1 : 10));
    if (turn > 100_000) throw new Error(`gave up waiting for ${what}`);
  }
}
