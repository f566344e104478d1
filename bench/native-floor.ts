/**
 * The native floor: the offload's topology in C, with blocking system calls, AES-256-GCM and
 * nothing else (bench/native-floor.c says exactly what it does). It answers whether a target
 * is out of reach of the design on this machine whatever the runtime is written in: each
 * figure here is what the same requests cost before any event loop, CBOR, key schedule,
 * handshake or scheduling.
 *
 * Compiled at each run with the system C compiler (`CC`, default `cc`) against the system's
 * OpenSSL (`libssl-dev` on Debian); without them the report says why it was skipped.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface NativeOverhead {
  /** End to end minus the compute process's measured compute time, p50 and p99 (ms). */
  readonly overheadMs: number;
  readonly overheadP99Ms: number;
}

export interface NativeFloorFigures {
  readonly requests: number;
  /** Sealed, through a relay process: the offload's three processes and two links. */
  readonly relayed: NativeOverhead;
  /** Sealed, straight to the compute process: two processes, one link. */
  readonly oneLink: NativeOverhead;
  /** Answers that carried back the first 4,000 bytes of their own input, both routes. */
  readonly identical: number;
  /** p50 round trip of a 200-byte message to an echo process, plain (microseconds). */
  readonly rawRttUs: number;
  /** The same message sealed both ways, through a relay process (microseconds). */
  readonly relayedSealedRttUs: number;
}

export type NativeFloorReport = NativeFloorFigures | { readonly skipped: string };

export interface NativeFloorOptions {
  readonly requests: number;
  readonly warmup: number;
  /** How long the compute process "computes" per request: the resnet50 benchmark's computeMs. */
  readonly computeUs: number;
  /** Memory walked meanwhile, and by the app between requests: the model's size. */
  readonly touchBytes: number;
  readonly smallOps: number;
}

const SOURCE = join(__dirname, 'native-floor.c');
const COMPILE_TIMEOUT_MS = 60_000;
const RUN_TIMEOUT_MS = 300_000;

export function measureNativeFloor(options: NativeFloorOptions): NativeFloorReport {
  const dir = mkdtempSync(join(tmpdir(), 'egpu-native-floor-'));
  try {
    const binary = join(dir, 'native-floor');
    const compiler = process.env.CC || 'cc';
    try {
      execFileSync(compiler, ['-O2', '-Wall', '-Wextra', '-Werror', '-pthread', '-o', binary, SOURCE, '-lcrypto'], {
        stdio: ['ignore', 'ignore', 'pipe'],
        timeout: COMPILE_TIMEOUT_MS,
      });
    } catch (error) {
      const detail = String((error as { stderr?: Buffer }).stderr ?? '').trim().split('\n')[0] || (error as Error).message;
      return { skipped: `${compiler} could not build bench/native-floor.c (needs a C compiler and OpenSSL's headers, e.g. libssl-dev): ${detail}` };
    }
    const args = [options.requests, options.warmup, Math.round(options.computeUs), options.touchBytes, options.smallOps].map(String);
    const output = execFileSync(binary, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: RUN_TIMEOUT_MS });
    return JSON.parse(output) as NativeFloorFigures;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
