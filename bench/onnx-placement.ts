/**
 * Where the execution context runs onnx.run: in its main thread (the default) or in its
 * worker thread (`egpu context --onnx-worker`, the constructs' `onnxWorkerThread`). The same
 * two measurements on a fresh local stack for each, the main thread being the baseline:
 *
 *   overheadMs        ResNet-50 requests one at a time (scripts/resnet-offload.ts, the
 *                     resnet50 benchmark's definition): what the hand-over to the thread
 *                     and back adds to each request
 *   otherSessionOpUs  a 4-byte add from a second session, one every couple of milliseconds,
 *                     while a first session runs ResNet-50 requests back to back: how long
 *                     one session's operations wait behind another's inference
 */
import { EgpClient } from '../assets/gpu-runtime/src/egp/client';
import { LocalStack, startLocalStack } from '../assets/gpu-runtime/src/egp/local-stack';
import { nowUs, quantile } from '../assets/gpu-runtime/src/egp/timing';
import { ResnetOffload, percentiles } from '../scripts/resnet-offload';

export interface PlacementFigures {
  /** p50 of end to end minus compute, one request at a time (ms). */
  readonly overheadMs: number;
  /** p50 and p99 of the other session's 4-byte add under load (microseconds). */
  readonly otherSessionOpUs: number;
  readonly otherSessionOpP99Us: number;
  /** Inferences per second of the loaded session meanwhile. */
  readonly inferencesPerSecond: number;
}

export interface PlacementReport {
  readonly main: PlacementFigures;
  readonly worker: PlacementFigures;
  /** worker / main. */
  readonly overheadRatio: number;
  readonly otherSessionOpRatio: number;
}

export interface PlacementOptions {
  readonly requests: number;
  readonly warmupRequests: number;
  /** How long the second session sends its small operations while the first one is loaded. */
  readonly loadedMs: number;
}

export const DEFAULT_PLACEMENT_OPTIONS: PlacementOptions = { requests: 20, warmupRequests: 3, loadedMs: 2_000 };
/** The second session's pause between its small operations. */
const SMALL_OP_GAP_MS = 2;

export async function measureOnnxPlacement(model: Buffer, options: PlacementOptions = DEFAULT_PLACEMENT_OPTIONS): Promise<PlacementReport> {
  const main = await measurePlacement(model, [], options);
  const worker = await measurePlacement(model, ['--onnx-worker'], options);
  const ratio = (a: number, b: number) => Math.round((a / b) * 100) / 100;
  return { main, worker, overheadRatio: ratio(worker.overheadMs, main.overheadMs), otherSessionOpRatio: ratio(worker.otherSessionOpUs, main.otherSessionOpUs) };
}

async function measurePlacement(model: Buffer, contextArgs: string[], options: PlacementOptions): Promise<PlacementFigures> {
  const stack = await startLocalStack({ contextArgs });
  try {
    const offload = await ResnetOffload.prepare(stack, model);
    try {
      const samples = await offload.samples(options.requests, options.warmupRequests);
      const overheadMs = Math.round(percentiles(samples, 'overheadUs').p50) / 1000;
      return { overheadMs, ...(await underLoad(stack, offload, options.loadedMs)) };
    } finally {
      await offload.close();
    }
  } finally {
    await stack.stop();
  }
}

/** The second session's 4-byte adds while `offload` runs requests back to back (without its direct reference runs). */
async function underLoad(stack: LocalStack, offload: ResnetOffload, loadedMs: number): Promise<Omit<PlacementFigures, 'overheadMs'>> {
  const other = await EgpClient.connect({ sgs: stack.sgsAddress, enclave: stack.enclave });
  try {
    const [a, b, out] = await Promise.all([other.malloc(4), other.malloc(4), other.malloc(4)]);
    const args = { a, b, out, count: 1 };
    await other.launchKernel('add', args);
    let loaded = true;
    const load = (async () => {
      let inferences = 0;
      while (loaded) {
        await offload.offloadOnly();
        inferences++;
      }
      return inferences;
    })();
    const started = nowUs();
    const times: number[] = [];
    while (nowUs() - started < loadedMs * 1000) {
      const start = nowUs();
      await other.launchKernel('add', args);
      times.push(nowUs() - start);
      await new Promise((resolve) => setTimeout(resolve, SMALL_OP_GAP_MS));
    }
    loaded = false;
    const inferences = await load;
    const seconds = (nowUs() - started) / 1e6;
    return {
      otherSessionOpUs: Math.round(quantile(times, 0.5)),
      otherSessionOpP99Us: Math.round(quantile(times, 0.99)),
      inferencesPerSecond: Math.round((inferences / seconds) * 10) / 10,
    };
  } finally {
    other.close();
  }
}
