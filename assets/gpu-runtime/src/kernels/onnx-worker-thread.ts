/**
 * The onnx worker thread of an execution context: it holds the context's onnxruntime
 * sessions and runs them, so that building a session (about a second for ResNet-50) and
 * running one (as long as the model takes) block this thread only, while the context's main
 * thread goes on with handshakes, uploads and the other sessions' operations.
 *
 * Messages (structured clones; the byte arrays are transferred, not copied):
 *
 *   main -> worker   {t: load, id, model}            build model `id` from its bytes
 *                    {t: run, id, model, feeds, outputNames}
 *                    {t: release, model}
 *                    {t: close}                       release every model and end the thread
 *   worker -> main   {t: loaded, id}
 *                    {t: ran, id, run}                outputs in the order asked, computeUs
 *                    {t: failed, id, message}         onnxruntime refused the model, the feeds, ...
 *                    {t: failed, id, message, internal: true}
 *                                                     anything else (a fault of the runtime's own):
 *                                                     the main thread ends the session as INTERNAL,
 *                                                     as it does when the model runs there
 *
 * Runs take turns: onnxruntime's run holds this thread until it returns. The main thread never
 * terminates this one, and keeps the process alive until it has ended: a thread stopped
 * while onnxruntime runs in it aborts the process when the run returns (onnxruntime-node
 * 1.30), so the main thread asks it to close instead. The model bytes and feeds this thread
 * receives are zeroed once used; the outputs leave with the answer.
 */
import { writeFileSync } from 'node:fs';
import { LoadedModel, ModelFeed, ModelRun, loadModelHere } from './onnx-model';
import type { OnnxSettings } from './onnx-runtime';
import { OperationError } from './operation-error';

/** workerData.role of the onnx worker thread (cli.ts serves it instead of a command). */
export const ONNX_WORKER_ROLE = 'egpu-onnx-worker';

export interface OnnxWorkerData {
  readonly role: typeof ONNX_WORKER_ROLE;
  readonly settings: OnnxSettings;
}

/** `id` numbers each request (a model's load names the model from then on); the answer carries it back. */
export type ToOnnxWorker =
  | { readonly t: 'load'; readonly id: number; readonly model: Uint8Array }
  | { readonly t: 'run'; readonly id: number; readonly model: number; readonly feeds: readonly ModelFeed[]; readonly outputNames: readonly string[] }
  | { readonly t: 'release'; readonly model: number }
  | { readonly t: 'close' };

export type FromOnnxWorker =
  | { readonly t: 'loaded'; readonly id: number }
  | { readonly t: 'ran'; readonly id: number; readonly run: ModelRun }
  | { readonly t: 'failed'; readonly id: number; readonly message: string; readonly internal?: true };

export function isOnnxWorkerData(data: unknown): data is OnnxWorkerData {
  return typeof data === 'object' && data !== null && (data as { role?: unknown }).role === ONNX_WORKER_ROLE;
}

/** Where the worker's messages come and go: a worker thread's parentPort, or its process's IPC channel (processPort()). */
export interface OnnxWorkerPort {
  on(event: 'message', listener: (message: ToOnnxWorker) => void): unknown;
  postMessage(message: FromOnnxWorker, transfer?: ArrayBuffer[]): void;
}

/**
 * This process's IPC channel as the worker's port (a child started by startRuntimeProcess):
 * messages are copies, written when send() returns, so what would have been transferred (a
 * run's outputs) is zeroed here at once. The worker ends with its parent, and offers itself
 * to the kernel's out-of-memory killer first: should the host run out of memory, the worker,
 * not the context, is the one to go.
 */
export function processPort(): OnnxWorkerPort {
  process.on('disconnect', () => process.exit(0));
  try {
    writeFileSync('/proc/self/oom_score_adj', '1000'); // raising one's own needs no privilege
  } catch {
    // not Linux, or no /proc: the limit still holds
  }
  return {
    on: (_event, listener) => process.on('message', listener as (message: unknown) => void),
    postMessage: (message, transfer) => sendCopy((copy) => process.send!(copy), message, transfer),
  };
}

export function serveOnnxWorker(port: OnnxWorkerPort, settings: OnnxSettings): void {
  const models = new Map<number, Promise<LoadedModel>>();
  const reply = (message: FromOnnxWorker, transfer: ArrayBuffer[] = []) => port.postMessage(message, transfer);
  port.on('message', (message: ToOnnxWorker) => {
    switch (message.t) {
      case 'load': {
        const loading = loadModelHere(message.model, settings);
        models.set(message.id, loading);
        loading.finally(() => wipe(message.model)).then( // onnxruntime holds its own copy now
          () => reply({ t: 'loaded', id: message.id }),
          (error: Error) => {
            models.delete(message.id);
            reply(failure(message.id, error));
          },
        );
        return;
      }
      case 'run': {
        const loading = models.get(message.model);
        if (loading === undefined) {
          // The main thread runs only models whose load it saw succeed and has not released.
          reply({ t: 'failed', id: message.id, message: `model ${message.model} is not loaded in the onnx worker`, internal: true });
          return;
        }
        loading.then((model) => model.run(message.feeds, message.outputNames)).finally(() => message.feeds.forEach((feed) => wipe(feed.data))).then(
          (run) => reply({ t: 'ran', id: message.id, run }, ownBuffers(run)),
          (error: Error) => reply(failure(message.id, error)),
        );
        return;
      }
      case 'release': {
        const loading = models.get(message.model);
        models.delete(message.model);
        void loading?.then((model) => model.release()).catch(() => undefined);
        return;
      }
      case 'close': {
        // A run holds this thread until it returns, so none is in progress now: release every
        // model, then end the thread. A run whose message came just before this one finds its
        // model released and fails; its caller was already answered by the main thread.
        const loaded = [...models.values()].map((loading) => loading.then((model) => model.release()));
        models.clear();
        void Promise.allSettled(loaded).then(() => process.exit(0));
        return;
      }
    }
  });
}

/**
 * Sends `message` over an IPC channel, which serializes it before send() returns, then zeroes
 * what a thread would have been handed instead (`transfer`): only the channel's copy is left.
 */
export function sendCopy<T>(send: (message: T) => void, message: T, transfer: ArrayBuffer[] = []): void {
  send(message);
  for (const buffer of transfer) new Uint8Array(buffer).fill(0);
}

/**
 * Zeroes the bytes of `view`, and only those: in a thread they are the whole copy handed
 * over; in a worker process the messages read together share one buffer, whose other views
 * (the next runs' feeds) are still to be used.
 */
function wipe(view: ArrayBufferView): void {
  new Uint8Array(view.buffer, view.byteOffset, view.byteLength).fill(0);
}

/**
 * The answer to a load or run that failed: onnxruntime's refusals (OperationError) by their
 * reason, without the code (the main thread's OperationError adds its own); anything else
 * marked internal.
 */
function failure(id: number, error: Error): FromOnnxWorker {
  return error instanceof OperationError
    ? { t: 'failed', id, message: error.reason }
    : { t: 'failed', id, message: error.stack ?? `${error.name}: ${error.message}`, internal: true }; // logged by the context, never sent
}

/** The outputs' memory, each once: transferred with the answer (onnxruntime made it for this run alone). */
function ownBuffers(run: ModelRun): ArrayBuffer[] {
  const buffers = new Set<ArrayBuffer>();
  for (const output of run.outputs) {
    if (output.bytes.buffer instanceof ArrayBuffer) buffers.add(output.bytes.buffer);
  }
  return [...buffers];
}
