/**
 * The execution context's side of its onnx worker thread (onnx-worker-thread.ts): models
 * loaded there, run from here, so onnxruntime never blocks the context's event loop.
 *
 * The thread starts with the first model and runs until close(), which lets a run in progress
 * finish first. If it stops (an uncaught error in it), every load and run waiting on it fails
 * with KERNEL_FAILED, its models are no longer `alive` (the session cache loads them again),
 * and the next load starts a new thread. After a second stop with no run completed since the
 * first (a thread that dies at start, or a model that loads and then stops its thread at every
 * run), the next thread starts only after a back-off (restartBackoff()); loads meanwhile fail
 * at once with KERNEL_FAILED saying when. A run that completes ends the back-off.
 *
 * Failures of a load or run: onnxruntime's refusals are KERNEL_FAILED (the session goes on);
 * anything else the thread catches there (a fault of the runtime itself) comes back marked
 * internal and rejects with a plain Error, which ends the session as INTERNAL, as it does
 * when the model runs in the main thread.
 *
 * Copies: a model's bytes and each run's feeds are copied once into memory that is then
 * transferred to the thread (onnxruntime takes no shared memory), which zeroes them once the
 * model is built or the run is over; outputs come back transferred.
 *
 * With a memory limit, the worker is a child process instead of a thread, its data memory
 * limited by RLIMIT_DATA: onnxruntime's allocations count against it, so a model that would
 * take more (intermediate tensors of gigabytes, say) fails its load or run with
 * KERNEL_FAILED, where in a thread it would push the whole context toward the out-of-memory
 * killer. The same messages then travel its IPC channel as copies: a second copy of each
 * run's feeds and outputs, and a pipe between, for that isolation. The copies this side
 * hands over are zeroed once sent, the worker zeroes what it received once used and its
 * outputs once sent; Node's own buffers of the serialized messages are not zeroed. The limit
 * is on host memory: GPU memory under the CUDA provider is not bounded by it.
 */
import type { ChildProcess } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { startRuntimeProcess, startRuntimeThread } from '../runtime-entry';
import { LoadedModel, ModelFeed, ModelRun } from './onnx-model';
import type { OnnxSettings } from './onnx-runtime';
import { FromOnnxWorker, ONNX_WORKER_ROLE, OnnxWorkerData, ToOnnxWorker, sendCopy } from './onnx-worker-thread';
import { OperationError } from './operation-error';

interface Waiting {
  resolve(value: unknown): void;
  reject(error: Error): void;
}

/** A worker thread or a worker process, as OnnxWorker drives it. */
interface WorkerHandle {
  postMessage(message: ToOnnxWorker, transfer?: ArrayBuffer[]): void;
  on(event: 'message', listener: (message: FromOnnxWorker) => void): unknown;
  on(event: 'error', listener: (error: Error) => void): unknown;
  on(event: 'exit', listener: (code: number | null, signal?: NodeJS.Signals | null) => void): unknown;
  once(event: 'exit', listener: () => void): unknown;
  /** Keep this process alive while it runs (or not). */
  ref(): void;
  unref(): void;
}

/**
 * A child process as a WorkerHandle: its IPC channel carries the messages as copies, written
 * when send() returns, so the memory a thread would have been handed (the model's bytes, a
 * run's feeds) is zeroed here at once. (Node's own buffers of the serialized message are not.)
 */
function processHandle(child: ChildProcess): WorkerHandle {
  return {
    postMessage: (message, transfer) => sendCopy((copy) => child.send(copy), message, transfer),
    on: (event: string, listener: (...args: any[]) => void) => child.on(event, listener),
    // A child that could not be started (no /bin/sh, no process left) reports an error and never exits.
    once: (event, listener) => {
      child.once(event, listener);
      if (event === 'exit') child.once('error', () => { if (child.pid === undefined) listener(); });
    },
    ref: () => { child.ref(); child.channel?.ref(); },
    unref: () => { child.unref(); child.channel?.unref(); },
  } as WorkerHandle;
}

interface Thread {
  readonly worker: WorkerHandle;
  /** Loads and runs sent and not answered, by request id. */
  readonly pending: Map<number, Waiting>;
  readonly models: Set<{ alive: boolean }>;
}

/** The back-off after the second stop with no run completed since the first. */
export const RESTART_BACKOFF_MS = 1_000;
/** The longest back-off. */
export const MAX_RESTART_BACKOFF_MS = 60_000;
/**
 * The least memory limit of a worker process, before its threads' stacks: Node.js 24 does not
 * start under about 600 MiB (RLIMIT_DATA counts the address space V8 reserves for its code
 * and heap; Node.js 20 needs less), and onnxruntime adds its own before any model.
 */
export const MIN_PROCESS_MEMORY_LIMIT = 1024 * 1024 * 1024;
/** What each onnxruntime thread's stack takes of the limit (RLIMIT_DATA counts thread stacks). */
const THREAD_STACK_BYTES = 8 * 1024 * 1024;

/** The least memory limit of a worker process whose onnxruntime runs `threads` intra-op threads. */
export function minProcessMemoryLimit(threads: number): number {
  return MIN_PROCESS_MEMORY_LIMIT + threads * THREAD_STACK_BYTES;
}

/**
 * How long to wait before starting a thread after `stops` stops with no run completed in
 * between: none after the first, `baseMs` after the second, doubling with each further one,
 * at most MAX_RESTART_BACKOFF_MS.
 */
export function restartBackoff(stops: number, baseMs = RESTART_BACKOFF_MS): number {
  return stops < 2 ? 0 : Math.min(baseMs * 2 ** (stops - 2), MAX_RESTART_BACKOFF_MS);
}

export class OnnxWorker {
  private thread?: Thread;
  /** Threads stopped since a run last completed. */
  private stopsSinceRun = 0;
  /** No new thread before this time (performance.now()). */
  private notBefore = 0;
  /** The load in progress: the next one starts after it. */
  private loading: Promise<void> = Promise.resolve();
  private nextId = 1;
  private closing?: Promise<void>;

  /**
   * @param log told when the thread stops on its own (an error in it), not on close()
   * @param restartBackoffMs the back-off after the second stop with no run completed since the first (restartBackoff())
   * @param processMemoryLimit run the models in a child process whose data memory is limited
   *   to this many bytes (RLIMIT_DATA), instead of a thread: a model that needs more fails its
   *   load or run with KERNEL_FAILED, and no model can take the context's own memory
   */
  constructor(
    private readonly settings: OnnxSettings,
    private readonly log: (line: string) => void = () => undefined,
    private readonly restartBackoffMs = RESTART_BACKOFF_MS,
    private readonly processMemoryLimit?: number,
  ) {
    const least = minProcessMemoryLimit(settings.threads);
    if (processMemoryLimit !== undefined && (!Number.isSafeInteger(processMemoryLimit) || processMemoryLimit < least)) {
      throw new RangeError(`an onnx worker process's memory limit is at least ${least} bytes (Node.js 24 and onnxruntime take most of 1 GiB before any model, and each of its ${settings.threads} onnxruntime thread${settings.threads === 1 ? '' : 's'} an 8 MiB stack), got ${processMemoryLimit}`);
    }
  }

  /** Where models run: 'thread', or 'process' (memory-limited). */
  get kind(): 'thread' | 'process' {
    return this.processMemoryLimit === undefined ? 'thread' : 'process';
  }

  /**
   * Builds a session of `model` in the thread; rejects with OperationError KERNEL_FAILED when
   * onnxruntime refuses it. The bytes are copied now (the session they come from may end, and
   * its memory be zeroed, while the load waits); loads then take turns, so models are built
   * one at a time. The copies waiting are bounded by the operations SGS lets be at the
   * context at once (sgs.json maxInFlight, default 8).
   */
  async load(model: Uint8Array): Promise<LoadedModel> {
    const copy = new Uint8Array(model); // memory of its own, handed to the thread (Buffer's slice would share the caller's)
    const turn = this.loading.then(() => this.loadNow(copy));
    this.loading = turn.then(() => undefined, () => undefined);
    return turn;
  }

  private async loadNow(copy: Uint8Array<ArrayBuffer>): Promise<LoadedModel> {
    const thread = this.running();
    const id = this.nextId++;
    await this.request<void>(thread, { t: 'load', id, model: copy }, [copy.buffer]);
    const state = { alive: this.thread === thread }; // not if the thread stopped right after answering
    if (state.alive) thread.models.add(state);
    return {
      get alive() {
        return state.alive;
      },
      run: (feeds, outputNames) => this.run(thread, state, id, feeds, outputNames),
      release: async () => {
        if (!state.alive) return;
        state.alive = false;
        thread.models.delete(state);
        thread.worker.postMessage({ t: 'release', model: id } satisfies ToOnnxWorker);
      },
    };
  }

  /**
   * Ends the thread: what waits on it fails at once, and the thread ends once a run in
   * progress returns (never terminate()d: that aborts the process when the run returns).
   */
  close(): Promise<void> {
    this.closing ??= this.closeNow();
    return this.closing;
  }

  private async closeNow(): Promise<void> {
    const thread = this.thread;
    if (thread === undefined) return;
    const exited = new Promise<void>((resolve) => thread.worker.once('exit', () => resolve()));
    // Held from now on: once the context's server and sockets are closed, nothing else keeps
    // the process alive, and a process that exits with onnxruntime mid-run in the thread aborts.
    thread.worker.ref();
    this.stopped(thread, 'the execution context is closing');
    thread.worker.postMessage({ t: 'close' } satisfies ToOnnxWorker);
    await exited;
  }

  private run(thread: Thread, state: { alive: boolean }, id: number, feeds: readonly ModelFeed[], outputNames: readonly string[]): Promise<ModelRun> {
    if (!state.alive) return Promise.reject(new OperationError('KERNEL_FAILED', 'the model is no longer loaded'));
    const copies = feeds.map((feed) => ({ name: feed.name, shape: [...feed.shape], data: new Float32Array(feed.data) }));
    const message: ToOnnxWorker = { t: 'run', id: this.nextId++, model: id, feeds: copies, outputNames: [...outputNames] };
    return this.request<ModelRun>(thread, message, copies.map((feed) => feed.data.buffer));
  }

  /** Sends a load or a run; settles with its answer, or fails when the thread stops first. */
  private request<T>(thread: Thread, message: Extract<ToOnnxWorker, { id: number }>, transfer: ArrayBuffer[]): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      thread.pending.set(message.id, { resolve: resolve as (value: unknown) => void, reject });
      thread.worker.postMessage(message, transfer);
    });
  }

  private running(): Thread {
    if (this.closing !== undefined) throw new OperationError('KERNEL_FAILED', 'the execution context is closing');
    if (this.thread !== undefined) return this.thread;
    const wait = Math.ceil(this.notBefore - performance.now());
    if (wait > 0) {
      throw new OperationError('KERNEL_FAILED', `the onnx worker ${this.kind} stopped ${this.stopsSinceRun} times with no run completed; a launch in ${wait} ms or later starts a new one`);
    }
    const workerData: OnnxWorkerData = { role: ONNX_WORKER_ROLE, settings: this.settings };
    const worker: WorkerHandle = this.processMemoryLimit === undefined
      ? startRuntimeThread(workerData)
      : processHandle(startRuntimeProcess(this.settings, this.processMemoryLimit));
    const thread: Thread = { worker, pending: new Map(), models: new Set() };
    const failed = (why: string) => {
      if (this.thread === thread) {
        this.stopsSinceRun++;
        const backoffMs = restartBackoff(this.stopsSinceRun, this.restartBackoffMs);
        this.notBefore = performance.now() + backoffMs;
        const next = backoffMs === 0 ? `the next launch starts a new ${this.kind}` : `${this.stopsSinceRun} stops with no run completed: no new ${this.kind} for ${backoffMs} ms`;
        this.log(`the onnx worker ${this.kind} stopped: ${why}; ${thread.pending.size} waiting loads and launches failed, ${next}`);
      }
      this.stopped(thread, why);
    };
    worker.on('message', (message: FromOnnxWorker) => this.receive(thread, message));
    worker.on('error', (error) => failed(error.message));
    worker.on('exit', (code, signal) => failed(signal ? `it was killed by ${signal}` : `it exited with code ${code}`));
    worker.unref(); // the context's server keeps the process alive, not this thread
    this.thread = thread;
    return thread;
  }

  private receive(thread: Thread, message: FromOnnxWorker): void {
    const waiting = thread.pending.get(message.id);
    thread.pending.delete(message.id);
    if (message.t === 'ran') this.stopsSinceRun = 0; // a completed run ends any back-off
    if (message.t === 'failed') waiting?.reject(message.internal ? new Error(`the onnx worker ${this.kind} failed: ${message.message}`) : new OperationError('KERNEL_FAILED', message.message));
    else waiting?.resolve(message.t === 'ran' ? message.run : undefined);
  }

  /** The thread is gone (or going): fail what waits on it and forget its models. */
  private stopped(thread: Thread, why: string): void {
    if (this.thread === thread) this.thread = undefined;
    const error = new OperationError('KERNEL_FAILED', `the onnx worker ${this.kind} stopped: ${why}`);
    for (const waiting of thread.pending.values()) waiting.reject(error);
    thread.pending.clear();
    for (const model of thread.models) model.alive = false;
    thread.models.clear();
  }
}

