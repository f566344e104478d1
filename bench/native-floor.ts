/**
 * The native floor: the offload's topology written plainly in C, with blocking system calls,
 * AES-256-GCM and nothing else (bench/native-floor.c says exactly what it does). It shows what
 * the design's data movement and crypto cost on this machine before any event loop, CBOR,
 * per-operation keys, handshake or scheduling: how far a target is from the design itself,
 * whatever the runtime is written in.
 *
 * Compiled at each run with the system C compiler (`CC`, default `cc`) against the system's
 * OpenSSL (`libssl-dev` on Debian); without them the report says why it was skipped. The same
 * program serves as a relay in C (`--relay`) for the bare path (bare-path.ts).
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
  /** Sealed, through a relay process: the offload's three processes and two links (ms). */
  readonly relayed: NativeOverhead;
  /** Sealed, straight to the compute process: two processes, one link. */
  readonly oneLink: NativeOverhead;
  /** Answers checked to carry back the first 4,000 bytes of their own input, both routes (one that does not fails the run). */
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

/** The compiled program (a temporary file until dispose()), or why there is none. */
export type NativeFloorBuild = { readonly binary: string; dispose(): void } | { readonly skipped: string };

export function buildNativeFloor(): NativeFloorBuild {
  const dir = mkdtempSync(join(tmpdir(), 'egpu-native-floor-'));
  const dispose = () => rmSync(dir, { recursive: true, force: true });
  const binary = join(dir, 'native-floor');
  const compiler = process.env.CC || 'cc';
  try {
    execFileSync(compiler, ['-O2', '-Wall', '-pthread', '-o', binary, SOURCE, '-lcrypto', '-lm'], {
      stdio: ['ignore', 'ignore', 'pipe'],
      timeout: COMPILE_TIMEOUT_MS,
    });
  } catch (error) {
    dispose();
    const lines = String((error as { stderr?: Buffer }).stderr ?? '').split('\n');
    const detail = lines.find((line) => /error/i.test(line))?.trim() ?? (error as Error).message;
    return { skipped: `${compiler} could not build bench/native-floor.c (needs a C compiler and OpenSSL's headers, e.g. libssl-dev): ${detail}` };
  }
  return { binary, dispose };
}

/** Runs the native floor; a run that fails is reported as skipped, with why, so the rest of the benchmark stands. */
export function measureNativeFloor(build: NativeFloorBuild, options: NativeFloorOptions): NativeFloorReport {
  if ('skipped' in build) return { skipped: build.skipped };
  const args = [options.requests, options.warmup, Math.round(options.computeUs), options.touchBytes, options.smallOps].map(String);
  try {
    const output = execFileSync(build.binary, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: RUN_TIMEOUT_MS });
    return JSON.parse(output) as NativeFloorFigures;
  } catch (error) {
    const stderr = String((error as { stderr?: string }).stderr ?? '').trim();
    return { skipped: `bench/native-floor.c failed: ${stderr || (error as Error).message}` };
  }
}
