/**
 * Where the execution context runs onnx.run: in its main thread (the default), in its
 * worker thread (`egpu context --onnx-worker`, the constructs' `onnxWorkerThread`), or in a
 * memory-limited worker process (`--onnx-memory-limit`, `onnxMemoryLimit`). The same two
 * measurements on a fresh local stack for each, in rounds that rotate which goes first, the
 * main thread being the baseline:
 *
 *   overheadMs        ResNet-50 requests one at a time (scripts/resnet-offload.ts, the
 *                     resnet50 benchmark's definition): what the worker adds to each request
 *   otherSessionOpUs  a 4-byte add from a second session, one every couple of milliseconds,
 *                     while a first session runs ResNet-50 requests back to back: how long
 *                     one session's operations wait behind another's inference
 */
import { EgpClient } from '../assets/gpu-runtime/src/egp/client';
import { LocalStack, startLocalStack } from '../assets/gpu-runtime/src/egp/local-stack';
import { nowUs, quantile } from '../assets/gpu-runtime/src/egp/timing';
import { ResnetOffload } from '../scripts/resnet-offload';

export interface PlacementFigures {
  /** p50 of end to end minus compute, one request at a time (ms). */
  readonly overheadMs: number;
  /** p50 and p99 of the other session's 4-byte add under load (microseconds). */
  readonly otherSessionOpUs: number;
  readonly otherSessionOpP99Us: number;
  /** Inferences per second of the loaded session meanwhile. */
  readonly inferencesPerSecond: number;
  /** Of the requests measured one at a time, those whose logits were byte-identical to a direct run's, and how many. */
  readonly identical: number;
  readonly requests: number;
}

export interface PlacementReport {
  readonly main: PlacementFigures;
  readonly worker: PlacementFigures;
  readonly process: PlacementFigures;
  /** worker / main. */
  readonly overheadRatio: number;
  readonly otherSessionOpRatio: number;
  /** process / main. */
  readonly processOverheadRatio: number;
}

/** The worker process's limit in the benchmark: room for ResNet-50 and its tensors. */
const PROCESS_MEMORY_LIMIT = 4 * 1024 ** 3;
const PLACEMENT_ARGS = { main: [], worker: ['--onnx-worker'], process: ['--onnx-memory-limit', String(PROCESS_MEMORY_LIMIT)] } as const;
type Placement = keyof typeof PLACEMENT_ARGS;
const PLACEMENTS = Object.keys(PLACEMENT_ARGS) as Placement[];

export interface PlacementOptions {
  /** Rounds of every placement, in rotating order (main first, then worker first, then process first, ...): a multiple of 3 lets each go first as often. */
  readonly rounds: number;
  /** Requests per placement and round, after the warm-up ones. */
  readonly requests: number;
  readonly warmupRequests: number;
  /** How long the second session sends its small operations while the first one is loaded, per round. */
  readonly loadedMs: number;
}

export const DEFAULT_PLACEMENT_OPTIONS: PlacementOptions = { rounds: 3, requests: 10, warmupRequests: 3, loadedMs: 1_000 };
/** The second session's pause between its small operations. */
const SMALL_OP_GAP_MS = 2;

/** What one round of one placement measured. */
interface RoundFigures {
  readonly overheadUs: number[];
  readonly identical: number;
  readonly otherSessionOpUs: number[];
  readonly inferences: number;
  readonly loadedSeconds: number;
}

export async function measureOnnxPlacement(model: Buffer, options: PlacementOptions = DEFAULT_PLACEMENT_OPTIONS): Promise<PlacementReport> {
  const rounds: Record<Placement, RoundFigures[]> = { main: [], worker: [], process: [] };
  for (let round = 0; round < options.rounds; round++) {
    const order = [...PLACEMENTS.slice(round % PLACEMENTS.length), ...PLACEMENTS.slice(0, round % PLACEMENTS.length)];
    for (const placement of order) rounds[placement].push(await measureRound(model, [...PLACEMENT_ARGS[placement]], options));
  }
  const main = summarize(rounds.main);
  const worker = summarize(rounds.worker);
  const inProcess = summarize(rounds.process);
  const ratio = (a: number, b: number) => Math.round((a / b) * 100) / 100;
  return {
    main, worker, process: inProcess,
    overheadRatio: ratio(worker.overheadMs, main.overheadMs),
    otherSessionOpRatio: ratio(worker.otherSessionOpUs, main.otherSessionOpUs),
    processOverheadRatio: ratio(inProcess.overheadMs, main.overheadMs),
  };
}

function summarize(rounds: readonly RoundFigures[]): PlacementFigures {
  const overheads = rounds.flatMap((round) => round.overheadUs);
  const ops = rounds.flatMap((round) => round.otherSessionOpUs);
  const inferences = rounds.reduce((sum, round) => sum + round.inferences, 0);
  const seconds = rounds.reduce((sum, round) => sum + round.loadedSeconds, 0);
  return {
    overheadMs: Math.round(quantile(overheads, 0.5)) / 1000,
    otherSessionOpUs: Math.round(quantile(ops, 0.5)),
    otherSessionOpP99Us: Math.round(quantile(ops, 0.99)),
    inferencesPerSecond: Math.round((inferences / seconds) * 10) / 10,
    identical: rounds.reduce((sum, round) => sum + round.identical, 0),
    requests: overheads.length,
  };
}

async function measureRound(model: Buffer, contextArgs: string[], options: PlacementOptions): Promise<RoundFigures> {
  const stack = await startLocalStack({ contextArgs });
  try {
    const offload = await ResnetOffload.prepare(stack, model);
    try {
      const samples = await offload.samples(options.requests, options.warmupRequests);
      const identical = samples.filter((sample) => sample.identical).length;
      return { overheadUs: samples.map((sample) => sample.overheadUs), identical, ...(await underLoad(stack, offload, options.loadedMs)) };
    } finally {
      await offload.close();
    }
  } finally {
    await stack.stop();
  }
}

/** The second session's 4-byte adds while `offload` runs requests back to back (without its direct reference runs). */
async function underLoad(stack: LocalStack, offload: ResnetOffload, loadedMs: number): Promise<Omit<RoundFigures, 'overheadUs' | 'identical'>> {
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
    return { otherSessionOpUs: times, inferences, loadedSeconds: (nowUs() - started) / 1e6 };
  } finally {
    other.close();
  }
}
