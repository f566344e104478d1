/**
 * Local mode, the whole host side: `egpu sgs` and `egpu context` started as real child
 * processes on Unix sockets in a temporary directory, a simulated NSM whose root both pin,
 * and an allowlist (and the context's --expect-pcr) naming the simulated enclave's PCRs.
 * The demo, the benchmark and the EGP integration tests run the offload path against it.
 *
 * From the sources (tests, tsx) the children run src/cli.ts through tsx; from the bundle,
 * dist/egpu.js itself.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EnclaveIdentity } from '../abe/handshake';
import type { SimulatedNsm } from '../attestation/simulated-nsm';
import { ROOT_CERTIFICATE_FILE } from '../attestation/simulated-nsm-state';
import { RuntimeError } from '../errors';
import { runtimeEntry } from '../runtime-entry';
import { SIMULATED_ENCLAVE_PCRS, loadOrCreateNsm, pcrHex, simulatedEnclave } from './local-enclave';

export interface LocalStackOptions {
  /** Extra sgs.json fields (partitions, maxInFlight, deadlineMs, ...), merged over the defaults. */
  readonly sgsConfig?: Record<string, unknown>;
  /** Extra `egpu context` arguments (--memory-cap, --threads, ...). */
  readonly contextArgs?: readonly string[];
  /** Echo the children's output to this process's stderr (default: keep it, for errors). */
  readonly echo?: boolean;
  /** How long a child may take to accept connections. */
  readonly startTimeoutMs?: number;
  /** Extra node options for the children (for example --cpu-prof while tuning). */
  readonly nodeArgs?: readonly string[];
}

export interface LocalStack {
  readonly dir: string;
  /** Where the EGP connects. */
  readonly sgsAddress: string;
  readonly contextAddress: string;
  readonly nsm: SimulatedNsm;
  /** The simulated enclave whose PCRs SGS and the context admit. */
  readonly enclave: EnclaveIdentity;
  readonly kernelLogPath: string;
  readonly sgs: ChildProcess;
  readonly context: ChildProcess;
  /** The last lines the children wrote (bounded). */
  output(): string;
  /** SIGKILLs the execution context (if running) and starts a new one on the same socket. */
  restartContext(): Promise<void>;
  /** SIGKILLs SGS (if running) and starts a new one with the same configuration. */
  restartSgs(): Promise<void>;
  /** Resident set size of a child, in bytes (Linux /proc), or undefined. */
  rssBytes(child: ChildProcess): number | undefined;
  /**
   * SIGTERM to both (SIGKILL after a grace period), then the temporary directory removed;
   * resolves to SGS's kernel-attestation log as it was flushed at exit.
   */
  stop(): Promise<{ kernelLog: string }>;
}

const DEFAULT_START_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 5_000;
const MAX_OUTPUT_CHARS = 64 * 1024;

/** The command line that runs `egpu` in a child process, from the sources or the bundle. */
export function egpuCommand(): string[] {
  const { script, nodeArgs } = runtimeEntry();
  return [process.execPath, ...nodeArgs, script];
}

export async function startLocalStack(options: LocalStackOptions = {}): Promise<LocalStack> {
  const dir = mkdtempSync(join(tmpdir(), 'egpu-local-'));
  const nsm = loadOrCreateNsm(join(dir, 'nsm'));
  const root = join(dir, 'nsm', ROOT_CERTIFICATE_FILE);
  const pcrs = pcrHex(SIMULATED_ENCLAVE_PCRS);
  const sgsSocket = join(dir, 'sgs.sock');
  const contextSocket = join(dir, 'context.sock');
  const kernelLogPath = join(dir, 'kernel-attestation.log');
  const config = {
    enclaveListen: `unix:${sgsSocket}`,
    context: `unix:${contextSocket}`,
    root,
    allowlist: [{ pcr0: pcrs[0], pcr1: pcrs[1], pcr2: pcrs[2] }],
    kernelAttestationLog: kernelLogPath,
    ...options.sgsConfig,
  };
  writeFileSync(join(dir, 'sgs.json'), `${JSON.stringify(config, null, 2)}\n`);
  let output = '';
  const [node, ...prefix] = egpuCommand();
  const start = (args: string[], socket: string): Promise<ChildProcess> => {
    const child = spawn(node, [...(options.nodeArgs ?? []), ...prefix, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = (chunk: Buffer) => {
      if (options.echo) process.stderr.write(chunk);
      output = (output + chunk.toString('utf8')).slice(-MAX_OUTPUT_CHARS);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    return waitUntilListening(child, socket, options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS, () => output);
  };
  const contextArgs = ['context', '--listen', `unix:${contextSocket}`, '--root', root,
    ...[0, 1, 2].flatMap((i) => ['--expect-pcr', `${i}=${pcrs[i as 0 | 1 | 2]}`]), ...(options.contextArgs ?? [])];

  const sgsArgs = ['sgs', '--config', join(dir, 'sgs.json')];
  let context: ChildProcess | undefined;
  let sgs: ChildProcess | undefined;
  try {
    [context, sgs] = await Promise.all([start(contextArgs, contextSocket), start(sgsArgs, sgsSocket)]);
  } catch (error) {
    context?.kill('SIGKILL');
    sgs?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }

  const stack = {
    dir,
    sgsAddress: `unix:${sgsSocket}`,
    contextAddress: `unix:${contextSocket}`,
    nsm,
    enclave: simulatedEnclave(nsm),
    kernelLogPath,
    sgs,
    context,
    output: () => output,
    async restartContext(): Promise<void> {
      await killAndWait(stack.context, 'SIGKILL');
      stack.context = await start(contextArgs, contextSocket);
    },
    async restartSgs(): Promise<void> {
      await killAndWait(stack.sgs, 'SIGKILL');
      stack.sgs = await start(sgsArgs, sgsSocket);
    },
    rssBytes(child: ChildProcess): number | undefined {
      try {
        const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
        return match ? Number(match[1]) * 1024 : undefined;
      } catch {
        return undefined;
      }
    },
    async stop(): Promise<{ kernelLog: string }> {
      await Promise.all([killAndWait(stack.sgs, 'SIGTERM'), killAndWait(stack.context, 'SIGTERM')]);
      let kernelLog = '';
      try {
        kernelLog = readFileSync(kernelLogPath, 'utf8');
      } catch {
        // never written: no launch ran
      }
      rmSync(dir, { recursive: true, force: true });
      return { kernelLog };
    },
  };
  return stack;
}

/** Resolves once the child accepts connections on `socket`; rejects if it exits or takes too long. */
async function waitUntilListening(child: ChildProcess, socket: string, timeoutMs: number, output: () => string): Promise<ChildProcess> {
  const deadline = Date.now() + timeoutMs;
  let exited: string | undefined;
  child.once('exit', (code, signal) => { exited = `exited (${signal ?? code})`; });
  while (Date.now() < deadline) {
    if (exited) break;
    if (existsSync(socket) && await connectable(socket)) return child;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  child.kill('SIGKILL');
  throw new RuntimeError('LOCAL_STACK', `${child.spawnargs.slice(-8).join(' ')} ${exited ?? `did not listen within ${timeoutMs} ms`}:\n${output().slice(-4000)}`);
}

function connectable(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.createConnection(path);
    probe.once('connect', () => { probe.destroy(); resolve(true); });
    probe.once('error', () => resolve(false));
  });
}

function killAndWait(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill(signal);
  });
}
