/**
 * A model loaded into onnxruntime, as onnx.run uses it: feed f32 inputs, fetch outputs as
 * bytes, learn how long onnxruntime itself ran. Two places hold one: this thread
 * (`loadModelHere`, which the onnx worker thread uses) and the onnx worker thread, seen from
 * the context's main thread (onnx-worker.ts), so that a model that runs for seconds does not
 * stop the context's event loop.
 */
import { OnnxRuntime, OnnxSession, OnnxSettings, loadOnnxRuntime, onnxSessionOptions } from './onnx-runtime';
import { elapsedUs } from './kernel';
import { OperationError } from './operation-error';

export interface ModelFeed {
  readonly name: string;
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

export interface ModelOutput {
  readonly name: string;
  /** The output tensor's bytes (its element type's little-endian encoding). */
  readonly bytes: Uint8Array;
}

export interface ModelRun {
  /** In the order of the output names asked for. */
  readonly outputs: readonly ModelOutput[];
  /** Microseconds onnxruntime's run took (not the feeds' or outputs' copies). */
  readonly computeUs: number;
}

export interface LoadedModel {
  /** False once the model cannot run any more (released, or its worker stopped): load it again. */
  readonly alive: boolean;
  /** Runs the model; rejects with OperationError KERNEL_FAILED when onnxruntime refuses the feeds or fails. */
  run(feeds: readonly ModelFeed[], outputNames: readonly string[]): Promise<ModelRun>;
  release(): Promise<void>;
}

/**
 * Runs in this thread take turns here: onnxruntime-node starts a run one setImmediate after
 * it is called and then holds the thread, so runs called together would otherwise each count
 * the ones before them in their computeUs (and a session would learn how long another
 * session's runs took).
 */
let turn: Promise<unknown> = Promise.resolve();

function inTurn<T>(work: () => Promise<T>): Promise<T> {
  const mine = turn.then(work);
  turn = mine.catch(() => undefined);
  return mine;
}

/** Builds an onnxruntime session in this thread; rejects with OperationError KERNEL_FAILED when onnxruntime refuses the model. */
export async function loadModelHere(model: Uint8Array, settings: OnnxSettings): Promise<LoadedModel> {
  let ort: OnnxRuntime;
  let session: OnnxSession;
  try {
    ort = await loadOnnxRuntime();
    session = await ort.InferenceSession.create(model, onnxSessionOptions(settings));
  } catch (error) {
    throw new OperationError('KERNEL_FAILED', `onnxruntime refused the model: ${(error as Error).message}`);
  }
  let alive = true;
  return {
    get alive() {
      return alive;
    },
    run(feeds, outputNames) {
      return inTurn(() => runSession(ort, session, feeds, outputNames));
    },
    async release() {
      if (!alive) return;
      alive = false;
      await session.release();
    },
  };
}

async function runSession(ort: OnnxRuntime, session: OnnxSession, feeds: readonly ModelFeed[], outputNames: readonly string[]): Promise<ModelRun> {
  let start = 0n;
  let results: Awaited<ReturnType<OnnxSession['run']>>;
  try {
    const inputs = Object.fromEntries(feeds.map((feed) => [feed.name, new ort.Tensor('float32', feed.data, [...feed.shape])]));
    start = process.hrtime.bigint();
    results = await session.run(inputs, [...outputNames]);
  } catch (error) {
    throw new OperationError('KERNEL_FAILED', `onnxruntime: ${(error as Error).message}`);
  }
  const computeUs = elapsedUs(start);
  const outputs = outputNames.map((name) => {
    const data = results[name]?.data;
    if (data === undefined || Array.isArray(data) || !ArrayBuffer.isView(data)) {
      throw new OperationError('KERNEL_FAILED', `output '${name}' is not a numeric tensor`);
    }
    return { name, bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
  });
  return { outputs, computeUs };
}
