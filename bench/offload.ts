/**
 * The offload path, end to end, against real `egpu sgs` and `egpu context` processes on Unix
 * sockets (assets/gpu-runtime/src/egp/local-stack.ts):
 *
 *   resnet50   ResNet-50 requests (1x3x224x224 in, 1000 logits out) through the EGP, each also
 *              run directly with onnxruntime in this process (same session options); overhead
 *              = the app's end-to-end latency minus the context's computeUs for that request
 *   smallOp    a 4-byte kernel (add of one f32) through EGP -> SGS -> context and back, one at a
 *              time, next to a plain round trip over the same kind of socket to an echo process
 *
 * Latencies are medians (p50) and 99th percentiles of many calls after a warm-up; the figures
 * are the machine's at the moment, other work included.
 */
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as net from 'node:net';
import { EgpClient } from '../assets/gpu-runtime/src/egp/client';
import { LocalStack, startLocalStack } from '../assets/gpu-runtime/src/egp/local-stack';
import { nowUs, quantile } from '../assets/gpu-runtime/src/egp/timing';
import type { BuiltModel } from '../scripts/build-resnet50';
import { BarePathReport, measureBarePath } from './bare-path';
import { ECHO_SOURCE, RELAY_SOURCE, connectUnix, startProcess } from './plain-processes';
import { BREAKDOWN, RequestSample, ResnetOffload, percentiles } from '../scripts/resnet-offload';

export interface OffloadReport {
  readonly resnet50: {
    readonly requests: number;
    readonly directMs: number;
    readonly offloadMs: number;
    readonly computeMs: number;
    readonly overheadMs: number;
    readonly overheadP99Ms: number;
    readonly identical: number;
    /** p50 of each part of a request (ms): seal, transport, queue, compute, open. */
    readonly breakdownMs: Record<(typeof BREAKDOWN)[number], number>;
    readonly modelUploadMs: number;
    /**
     * The same requests through the bare path (bare-path.ts): the three processes and their
     * sockets, none of the offload. Its overhead is the floor the sockets and wake-ups set.
     */
    readonly bare: BarePathReport;
  };
  readonly smallOp: {
    readonly rawRttUs: number;
    readonly offloadRttUs: number;
    readonly rawRttP99Us: number;
    readonly offloadRttP99Us: number;
    readonly ratio: number;
    /**
     * CPU time per 4-byte operation in each process of the path (microseconds, from
     * /proc/PID/schedstat for SGS and the context, process.cpuUsage here); undefined where
     * /proc is not there.
     */
    readonly cpuUsPerOp: { readonly egp: number; readonly sgs?: number; readonly context?: number };
    /**
     * The raw round trip p50 through a relay process (the offload's three processes and four
     * socket hops, none of its work): the floor for the offload's topology.
     */
    readonly relayedRawRttUs: number;
    /** The raw round trip p50 when the echo process has been idle IDLE_GAP_MS before each. */
    readonly rawRttAfterIdleUs: number;
  };
}

/** The idle time before each of the raw round trips that measure a cold wake-up. */
export const IDLE_GAP_MS = 5;
const IDLE_ROUND_TRIPS = 200;

export interface OffloadOptions {
  readonly resnetRequests: number;
  readonly warmupRequests: number;
  readonly smallOps: number;
  readonly warmupSmallOps: number;
}

export const DEFAULT_OFFLOAD_OPTIONS: OffloadOptions = { resnetRequests: 40, warmupRequests: 3, smallOps: 3000, warmupSmallOps: 1000 };

const ms = (us: number) => Math.round(us) / 1000;

/** @param nativeRelay the compiled bench/native-floor.c, for the bare path's relay in C */
export async function measureOffload(model: BuiltModel, options: OffloadOptions = DEFAULT_OFFLOAD_OPTIONS, nativeRelay?: string): Promise<OffloadReport> {
  const stack = await startLocalStack();
  let smallOp: OffloadReport['smallOp'];
  let resnet50: Omit<OffloadReport['resnet50'], 'bare'>;
  try {
    smallOp = await measureSmallOp(stack, options);
    resnet50 = await measureResnet(stack, model.bytes, options);
  } finally {
    await stack.stop();
  }
  const bare = await measureBarePath(model.path, options.resnetRequests, options.warmupRequests, nativeRelay);
  return { resnet50: { ...resnet50, bare }, smallOp };
}

async function measureResnet(stack: LocalStack, model: Buffer, options: OffloadOptions): Promise<Omit<OffloadReport['resnet50'], 'bare'>> {
  const offload = await ResnetOffload.prepare(stack, model);
  let samples: RequestSample[];
  try {
    samples = await offload.samples(options.resnetRequests, options.warmupRequests);
  } finally {
    await offload.close();
  }
  const p50 = (key: keyof Omit<RequestSample, 'identical'>) => ms(percentiles(samples, key).p50);
  return {
    requests: samples.length,
    directMs: p50('directUs'),
    offloadMs: p50('e2eUs'),
    computeMs: p50('computeUs'),
    overheadMs: p50('overheadUs'),
    overheadP99Ms: ms(percentiles(samples, 'overheadUs').p99),
    identical: samples.filter((s) => s.identical).length,
    breakdownMs: Object.fromEntries(BREAKDOWN.map((part) => [part, p50(`${part}Us`)])) as Record<(typeof BREAKDOWN)[number], number>,
    modelUploadMs: ms(offload.uploadUs),
  };
}

async function measureSmallOp(stack: LocalStack, options: OffloadOptions): Promise<OffloadReport['smallOp']> {
  const gpu = await EgpClient.connect({ sgs: stack.sgsAddress, enclave: stack.enclave });
  const offload: number[] = [];
  let cpuUsPerOp: OffloadReport['smallOp']['cpuUsPerOp'] = { egp: Number.NaN };
  try {
    const [a, b, out] = await Promise.all([gpu.malloc(4), gpu.malloc(4), gpu.malloc(4)]);
    await Promise.all([gpu.memcpyHtoD(a, Buffer.alloc(4)), gpu.memcpyHtoD(b, Buffer.alloc(4))]);
    const args = { a, b, out, count: 1 };
    for (let i = 0; i < options.warmupSmallOps; i++) await gpu.launchKernel('add', args);
    const cpuBefore = { egp: process.cpuUsage(), sgs: cpuNs(stack.sgs.pid), context: cpuNs(stack.context.pid) };
    for (let i = 0; i < options.smallOps; i++) {
      const start = nowUs();
      await gpu.launchKernel('add', args);
      offload.push(nowUs() - start);
    }
    const egpCpu = process.cpuUsage(cpuBefore.egp);
    const perOp = (before: number | undefined, pid: number | undefined) => {
      const after = cpuNs(pid);
      return before === undefined || after === undefined ? undefined : Math.round((after - before) / 1e3 / options.smallOps);
    };
    cpuUsPerOp = {
      egp: Math.round((egpCpu.user + egpCpu.system) / options.smallOps),
      sgs: perOp(cpuBefore.sgs, stack.sgs.pid),
      context: perOp(cpuBefore.context, stack.context.pid),
    };
  } finally {
    gpu.close();
  }
  const raw = await rawRoundTrips(join(stack.dir, 'echo.sock'), options.warmupSmallOps + options.smallOps, options.warmupSmallOps);
  const relayed = await rawRoundTrips(join(stack.dir, 'echo-relayed.sock'), options.warmupSmallOps + options.smallOps, options.warmupSmallOps, { relayed: true });
  const rawAfterIdle = await rawRoundTrips(join(stack.dir, 'echo-idle.sock'), IDLE_ROUND_TRIPS, 0, { idleMs: IDLE_GAP_MS });
  const rawRttUs = quantile(raw, 0.5);
  const offloadRttUs = quantile(offload, 0.5);
  return {
    rawRttUs: Math.round(rawRttUs * 10) / 10,
    offloadRttUs: Math.round(offloadRttUs * 10) / 10,
    rawRttP99Us: Math.round(quantile(raw, 0.99) * 10) / 10,
    relayedRawRttUs: Math.round(quantile(relayed, 0.5) * 10) / 10,
    offloadRttP99Us: Math.round(quantile(offload, 0.99) * 10) / 10,
    ratio: Math.round((offloadRttUs / rawRttUs) * 100) / 100,
    cpuUsPerOp,
    rawRttAfterIdleUs: Math.round(quantile(rawAfterIdle, 0.5) * 10) / 10,
  };
}

/** CPU time a process has run so far (ns), from /proc/PID/schedstat; undefined without it. */
function cpuNs(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);
  } catch {
    return undefined;
  }
}

/**
 * Round trips of a 200-byte message (about an ABE frame of a small launch) to an echo
 * process over a Unix socket: the same kind of link, with none of the protocol. With
 * `relayed`, through a relay process in between, as the offload goes through SGS. With
 * `idleMs`, the processes sleep that long before each round trip, as the processes of the
 * offload path do through an inference.
 */
async function rawRoundTrips(path: string, calls: number, warmup: number, { idleMs = 0, relayed = false } = {}): Promise<number[]> {
  const children: ChildProcess[] = [];
  let socket: net.Socket | undefined;
  const message = Buffer.alloc(200, 7);
  const times: number[] = [];
  try {
    children.push(await startProcess(['-e', ECHO_SOURCE, path]));
    if (relayed) children.push(await startProcess(['-e', RELAY_SOURCE, `${path}.relay`, path]));
    socket = await connectUnix(relayed ? `${path}.relay` : path);
    const link = socket;
    for (let i = 0; i < calls; i++) {
      if (idleMs > 0) await new Promise((resolve) => setTimeout(resolve, idleMs));
      const start = nowUs();
      await new Promise<void>((resolve) => {
        let received = 0;
        const onData = (chunk: Buffer) => {
          received += chunk.length;
          if (received >= message.length) {
            link.off('data', onData);
            resolve();
          }
        };
        link.on('data', onData);
        link.write(message);
      });
      if (i >= warmup) times.push(nowUs() - start);
    }
  } finally {
    socket?.destroy();
    for (const child of children) child.kill('SIGTERM');
  }
  return times;
}
