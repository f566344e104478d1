/**
 * The onnx worker thread (kernels/onnx-worker.ts): a model loaded there runs with outputs
 * byte-identical to one loaded in this thread and to a direct onnxruntime run, in the order
 * asked; the caller's feeds and model bytes are copied, never detached or changed;
 * onnxruntime's refusals of a model or of feeds come back as KERNEL_FAILED and leave the
 * worker usable; a thread that stops fails the run waiting on it, its models stop being
 * alive, and the next load starts a new thread; close() and release() end use. The session
 * cache loads a model again once it is no longer alive, and releases the dead one. close()
 * while onnxruntime runs in the thread ends the process cleanly (shown in a child: a thread
 * terminated mid-run used to abort it).
 */
import { SpawnSyncReturns, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { MessageChannel, type Worker } from 'node:worker_threads';
import { afterAll, describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import type { CborValue } from '../../../../lib/shared/cbor';
import { DeviceMemory } from '../../src/context/device-memory';
import { LoadedModel, ModelFeed, ModelRun, loadModelHere } from '../../src/kernels/onnx-model';
import { createOnnxRunKernel } from '../../src/kernels/onnx-run';
import { onnxSessionOptions } from '../../src/kernels/onnx-runtime';
import { OnnxSessionCache } from '../../src/kernels/onnx-session-cache';
import { MAX_RESTART_BACKOFF_MS, OnnxWorker, RESTART_BACKOFF_MS, restartBackoff } from '../../src/kernels/onnx-worker';
import { FromOnnxWorker, ToOnnxWorker, serveOnnxWorker } from '../../src/kernels/onnx-worker-thread';
import { OperationError } from '../../src/kernels/operation-error';
import { DataType, NodeProto, TensorProto, encodeModel, floatTensor } from '../../src/onnx/onnx-writer';
import { CALLER, IMAGE_A, IMAGE_B, expandingModel, matMulChain, randomF32 } from './helpers';

const SETTINGS = { threads: 1, provider: 'cpu' as const };

/** A model of f32 values x -> outputs (named with their shapes) by `nodes`. */
function f32Model(nodes: NodeProto[], x: (number | string)[], outputs: [string, (number | string)[]][], initializers: TensorProto[]): Buffer {
  const value = (name: string, shape: (number | string)[]) => ({ name, elemType: DataType.FLOAT, shape });
  return encodeModel({
    irVersion: 8,
    opsetImports: [{ version: 17 }],
    graph: { name: 'test', nodes, inputs: [value('x', x)], outputs: outputs.map(([name, shape]) => value(name, shape)), initializers },
  });
}

/** y = Relu(x·w + b), z = Sigmoid(y), with x: [batch, 8], w: [8, 4]. */
const TINY = f32Model([
  { opType: 'MatMul', inputs: ['x', 'w'], outputs: ['m'] },
  { opType: 'Add', inputs: ['m', 'b'], outputs: ['s'] },
  { opType: 'Relu', inputs: ['s'], outputs: ['y'] },
  { opType: 'Sigmoid', inputs: ['y'], outputs: ['z'] },
], ['batch', 8], [['y', ['batch', 4]], ['z', ['batch', 4]]], [floatTensor('w', [8, 4], randomF32(32)), floatTensor('b', [4], randomF32(4))]);

/** 64 MatMuls in a chain on x: [512, 512] (tens of milliseconds or more). */
const SLOW = matMulChain(64, 512);

/** A node process that loads SLOW in an OnnxWorker, runs it once, then closes the worker during a second run (`midRun`) or after it. */
function closeDuringRun(midRun: boolean): SpawnSyncReturns<string> {
  const script = `
    require(${JSON.stringify(createRequire(__filename).resolve('tsx/cjs'))});
    const { OnnxWorker } = require(${JSON.stringify(path.resolve(__dirname, '../../src/kernels/onnx-worker.ts'))});
    const feeds = () => [{ name: 'x', shape: [512, 512], data: new Float32Array(512 * 512).fill(0.5) }];
    const keep = setInterval(() => undefined, 1000); // the worker's thread is unref()ed, as in a context whose server keeps it alive
    (async () => {
      const worker = new OnnxWorker({ threads: 1, provider: 'cpu' });
      const model = await worker.load(require('node:fs').readFileSync(0));
      const start = Date.now();
      await model.run(feeds(), ['y']);
      const runMs = Date.now() - start;
      const runs = [1, 2, 3].map(() => model.run(feeds(), ['y']).then(() => 'ran', (error) => error.code));
      // Mid-run: half-way through the second of three runs queued together.
      if (${midRun}) await new Promise((resolve) => setTimeout(resolve, runMs * 1.5));
      else await Promise.all(runs);
      clearInterval(keep); // as a context's close() does, after its server: close() alone must hold the process until the thread ends
      await worker.close();
      console.log((await Promise.all(runs)).join(' '));
    })();`;
  return spawnSync(process.execPath, ['-e', script], { input: SLOW, encoding: 'utf8', timeout: 60_000 });
}

const workers: OnnxWorker[] = [];
function onnxWorker(log?: (line: string) => void, restartBackoffMs?: number): OnnxWorker {
  return workers[workers.push(new OnnxWorker(SETTINGS, log, restartBackoffMs)) - 1];
}
afterAll(() => Promise.all(workers.map((worker) => worker.close())));

/** The worker's current thread (a private field): to stop it as a crash would. */
function threadOf(worker: OnnxWorker): Worker | undefined {
  return (worker as unknown as { thread?: { worker: Worker } }).thread?.worker;
}

function feed(values: Float32Array, shape = [values.length / 8, 8]): ModelFeed[] {
  return [{ name: 'x', shape, data: values }];
}

const hex = (bytes: ArrayBufferView): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
/** The outputs as [name, hex of the bytes], in the order given. */
const outputsOf = (run: ModelRun): [string, string][] => run.outputs.map((output) => [output.name, hex(output.bytes)]);

async function expectKernelFailed(promise: Promise<unknown>, reason: RegExp): Promise<void> {
  const error = await promise.then(() => undefined, (caught: unknown) => caught);
  expect(error).toBeInstanceOf(OperationError);
  expect((error as OperationError).code).toBe('KERNEL_FAILED');
  expect((error as OperationError).reason).toMatch(reason);
}

describe('OnnxWorker', () => {
  it('gives outputs byte-identical to a model loaded in this thread and to a direct run, in the order asked', async () => {
    const input = randomF32(24, 2);
    const inThread = await loadModelHere(TINY, SETTINGS);
    const expected = await inThread.run(feed(input), ['z', 'y']);
    await inThread.release();
    const model = await onnxWorker().load(TINY);
    const run = await model.run(feed(input), ['z', 'y']);
    expect(run.outputs.map((output) => output.bytes.length)).toEqual([48, 48]);
    expect(outputsOf(run)).toEqual(outputsOf(expected));
    expect(Number.isSafeInteger(run.computeUs) && run.computeUs >= 0).toBe(true);
    expect(outputsOf(await model.run(feed(input), ['y']))).toEqual([outputsOf(expected)[1]]);

    const direct = await ort.InferenceSession.create(TINY, onnxSessionOptions(SETTINGS));
    const results = await direct.run({ x: new ort.Tensor('float32', input, [3, 8]) });
    await direct.release();
    expect(outputsOf(run)).toEqual(['z', 'y'].map((name) => [name, hex(results[name].data as Float32Array)]));
  });

  it('copies the feeds and the model bytes: views into larger memory are neither detached nor changed', async () => {
    const modelMemory = new ArrayBuffer(TINY.length + 64);
    const modelView = Buffer.from(modelMemory, 32, TINY.length);
    modelView.set(TINY);
    const model = await onnxWorker().load(modelView);
    expect(modelMemory.byteLength).toBe(TINY.length + 64);
    expect(modelView.equals(TINY)).toBe(true);

    const values = randomF32(16);
    const feedMemory = Buffer.alloc(4 * 40);
    const input = new Float32Array(feedMemory.buffer, feedMemory.byteOffset + 16, 16);
    input.set(values);
    const run = await model.run(feed(input), ['y', 'z']);
    expect(feedMemory.buffer.byteLength).toBe(4 * 40);
    expect(input.byteLength).toBe(4 * 16);
    expect(Array.from(input)).toEqual(Array.from(values));
    expect(outputsOf(run)).toEqual(outputsOf(await model.run(feed(values), ['y', 'z'])));
  });

  it('rejects a model onnxruntime refuses with KERNEL_FAILED, and then loads and runs a good one', async () => {
    const worker = onnxWorker();
    await expectKernelFailed(worker.load(Buffer.from('not an onnx model')), /^onnxruntime refused the model/);
    const model = await worker.load(TINY);
    expect((await model.run(feed(randomF32(8)), ['z'])).outputs[0].bytes.length).toBe(16);
  });

  it('rejects feeds onnxruntime refuses with KERNEL_FAILED, and the model still runs', async () => {
    const model = await onnxWorker().load(TINY);
    const input = randomF32(16);
    const expected = outputsOf(await model.run(feed(input), ['y']));
    await expectKernelFailed(model.run([{ name: 'nope', shape: [2, 8], data: input }], ['y']), /^onnxruntime: /);
    await expectKernelFailed(model.run(feed(input, [4, 4]), ['y']), /^onnxruntime: /);
    await expectKernelFailed(model.run(feed(input), ['nope']), /^onnxruntime: /);
    expect(model.alive).toBe(true);
    expect(outputsOf(await model.run(feed(input), ['y']))).toEqual(expected);
  });

  // onnx.run cannot send such feeds (it sends each shape's element count), but LoadedModel.run
  // promises KERNEL_FAILED for any refusal: onnxruntime's Tensor throws a plain Error here.
  it('rejects feeds whose shape does not match their length with KERNEL_FAILED, in this thread too', async () => {
    const inThread = await loadModelHere(TINY, SETTINGS);
    const refused = expectKernelFailed(inThread.run(feed(randomF32(16), [3, 8]), ['y']), /^onnxruntime: /);
    await refused.finally(() => inThread.release());
  });

  it('fails the pending run when its thread stops, says so, and the next load starts a new thread', async () => {
    const lines: string[] = [];
    const worker = onnxWorker((line) => lines.push(line));
    const model = await worker.load(TINY);
    const first = threadOf(worker);
    // A message the thread cannot read stops it before it reads the run's (terminate() could
    // land while onnxruntime runs, which aborts the process).
    first!.postMessage(null);
    await expectKernelFailed(model.run(feed(randomF32(8)), ['z']), /worker thread stopped/);
    expect(model.alive).toBe(false);
    expect(lines).toEqual([expect.stringMatching(/^the onnx worker thread stopped: .*; 1 waiting loads and launches failed, the next launch starts a new thread$/)]);
    await expectKernelFailed(model.run(feed(randomF32(8)), ['z']), /no longer loaded/);

    const input = randomF32(8);
    const again = await worker.load(TINY);
    expect(threadOf(worker)).toBeDefined();
    expect(threadOf(worker)).not.toBe(first);
    const inThread = await loadModelHere(TINY, SETTINGS);
    expect(outputsOf(await again.run(feed(input), ['z']))).toEqual(outputsOf(await inThread.run(feed(input), ['z'])));
    await inThread.release();
  });

  it('starts a thread at once after a stop, waits a back-off after a second with no run completed between, and a completed run ends it', async () => {
    const lines: string[] = [];
    const worker = onnxWorker((line) => lines.push(line), 400);
    /** A load whose new thread stops before it could answer (the message after the load's stops it). */
    const loadThatStops = async () => {
      const load = worker.load(TINY);
      await new Promise<void>((resolve) => setImmediate(resolve)); // its turn has begun: a new thread has the load
      threadOf(worker)!.postMessage(null);
      await expectKernelFailed(load, /worker thread stopped/);
    };
    await loadThatStops();
    await loadThatStops(); // started at once after the first stop
    const refusedAt = Date.now();
    await expectKernelFailed(worker.load(TINY), /^the onnx worker thread stopped 2 times with no run completed; a launch in \d+ ms or later starts a new one$/);
    expect(threadOf(worker)).toBeUndefined(); // refused without starting one
    expect(lines).toEqual([
      expect.stringMatching(/; 1 waiting loads and launches failed, the next launch starts a new thread$/),
      expect.stringMatching(/; 1 waiting loads and launches failed, 2 stops with no run completed: no new thread for 400 ms$/),
    ]);

    // After the back-off: a model that loads and then stops its thread at its run still counts.
    await new Promise((resolve) => setTimeout(resolve, 450 - (Date.now() - refusedAt)));
    const loaded = await worker.load(TINY);
    threadOf(worker)!.postMessage(null);
    await expectKernelFailed(loaded.run(feed(randomF32(8)), ['z']), /worker thread stopped/);
    expect(lines[2]).toMatch(/3 stops with no run completed: no new thread for 800 ms$/);
    await expectKernelFailed(worker.load(TINY), /stopped 3 times with no run completed/);

    // A run that completes ends the back-off: the next stop is a first one again.
    await new Promise((resolve) => setTimeout(resolve, 850));
    const model = await worker.load(TINY);
    expect((await model.run(feed(randomF32(8)), ['z'])).outputs[0].bytes.length).toBe(16);
    threadOf(worker)!.postMessage(null);
    await expectKernelFailed(model.run(feed(randomF32(8)), ['z']), /worker thread stopped/);
    expect(lines[3]).toMatch(/the next launch starts a new thread$/);
    const again = await worker.load(TINY);
    expect((await again.run(feed(randomF32(8)), ['z'])).outputs[0].bytes.length).toBe(16);
  });

  it('backs off 0, then the base, doubling up to a minute', () => {
    expect([1, 2, 3, 4].map((stops) => restartBackoff(stops))).toEqual([0, RESTART_BACKOFF_MS, 2 * RESTART_BACKOFF_MS, 4 * RESTART_BACKOFF_MS]);
    expect(restartBackoff(8)).toBe(MAX_RESTART_BACKOFF_MS);
    expect(restartBackoff(1000)).toBe(MAX_RESTART_BACKOFF_MS);
    expect(restartBackoff(3, 40_000)).toBe(MAX_RESTART_BACKOFF_MS);
  });

  // As when the model runs in the main thread, where such an error propagates and ends the
  // session as INTERNAL (executeOperation turns only OperationErrors into results).
  it('rejects with a plain Error, not KERNEL_FAILED, what the thread reports as its own fault', async () => {
    const worker = onnxWorker();
    const model = await worker.load(TINY);
    // The thread's first model is load request 1: released behind the main thread's back, a run
    // of it is something the main thread never asks for.
    threadOf(worker)!.postMessage({ t: 'release', model: 1 });
    const error = await model.run(feed(randomF32(8)), ['z']).then(() => undefined, (caught: unknown) => caught);
    expect(error).toBeInstanceOf(Error);
    expect(error).not.toBeInstanceOf(OperationError);
    expect((error as Error).message).toBe('the onnx worker thread failed: model 1 is not loaded in the onnx worker');
  });

  // close() as the context's close() does it, in a process of its own: after a run, and while a
  // run is in the thread, half-way through a run as long as the one before.
  it('closes cleanly in a process of its own once the run has ended', () => {
    const child = closeDuringRun(false);
    expect(child.stderr).toBe('');
    expect([child.status, child.stdout.trim()]).toEqual([0, 'ran ran ran']);
  });

  // worker.terminate() there would abort the process when onnxruntime's synchronous run returns
  // into the terminating thread ("terminate called after throwing an instance of 'Napi::Error'").
  it('closes cleanly in a process of its own while onnxruntime runs in the thread', () => {
    const child = closeDuringRun(true);
    expect(child.stderr).not.toMatch(/terminate called/);
    expect(child.status).toBe(0);
    expect(child.stdout.trim()).toMatch(/ KERNEL_FAILED$/); // the third had not run: close() failed it
  });

  it('loads one model at a time: a load waiting its turn survives a thread that stops under the one before it', async () => {
    const worker = onnxWorker();
    const first = worker.load(SLOW).catch((error: unknown) => error);
    const second = worker.load(TINY);
    await new Promise<void>((resolve) => setImmediate(resolve)); // the first's turn has begun: its thread runs
    threadOf(worker)!.postMessage(null);
    const outcome = await first;
    expect(outcome instanceof OperationError ? outcome.code : (outcome as LoadedModel).alive).toBe(outcome instanceof OperationError ? 'KERNEL_FAILED' : false);
    const model = await second;
    const input = randomF32(8);
    const inThread = await loadModelHere(TINY, SETTINGS);
    expect(outputsOf(await model.run(feed(input), ['z']))).toEqual(outputsOf(await inThread.run(feed(input), ['z'])));
    await inThread.release();
  });

  it('close() fails the loads still waiting their turn, and closing again waits for the same end', async () => {
    const worker = onnxWorker();
    await worker.load(TINY); // the thread runs
    const waiting = [worker.load(SLOW), worker.load(TINY)];
    waiting.forEach((load) => load.catch(() => undefined)); // checked below, once closed
    const closing = worker.close();
    expect(worker.close()).toBe(closing);
    await closing;
    for (const load of waiting) await expectKernelFailed(load, /closing/);
  });

  it.each([
    ['in this thread', () => loadModelHere(SLOW, SETTINGS)],
    ['in the worker thread', () => onnxWorker().load(SLOW)],
  ])('counts in computeUs only the run itself when runs are called together (%s)', async (_, load) => {
    const model = await load();
    try {
      const x = () => [{ name: 'x', shape: [512, 512], data: randomF32(512 * 512, 0.1) }];
      await model.run(x(), ['y']);
      const start = process.hrtime.bigint();
      const runs = await Promise.all([1, 2, 3].map(() => model.run(x(), ['y'])));
      const wallUs = Number(process.hrtime.bigint() - start) / 1e3;
      // They run one after another: their own times add up to less than the time all three took
      // (each counting those before it would add up to about twice that).
      expect(runs.reduce((sum, run) => sum + run.computeUs, 0)).toBeLessThanOrEqual(wallUs);
    } finally {
      await model.release();
    }
  });

  it('refuses loads after close(), and its models are no longer alive', async () => {
    const worker = onnxWorker();
    const model = await worker.load(TINY);
    await worker.close();
    expect(model.alive).toBe(false);
    await expectKernelFailed(worker.load(TINY), /closing/);
    await expectKernelFailed(model.run(feed(randomF32(8)), ['z']), /no longer loaded/);
  });

  it('release() ends a model: not alive, and runs reject with KERNEL_FAILED', async () => {
    const worker = onnxWorker();
    const model = await worker.load(TINY);
    const other = await worker.load(TINY);
    await model.release();
    expect(model.alive).toBe(false);
    await expectKernelFailed(model.run(feed(randomF32(8)), ['z']), /no longer loaded/);
    expect(other.alive).toBe(true);
    expect((await other.run(feed(randomF32(8)), ['z'])).outputs[0].bytes.length).toBe(16);
  });
});

describe('OnnxWorker in a memory-limited process', () => {
  const LIMIT = 2 * 1024 ** 3; // room for Node.js 24, tsx's loader thread and onnxruntime
  const processWorker = (log?: (line: string) => void) => workers[workers.push(new OnnxWorker(SETTINGS, log, undefined, LIMIT)) - 1];

  it('gives outputs byte-identical to a model loaded in this thread', async () => {
    const input = randomF32(24, 2);
    const inThread = await loadModelHere(TINY, SETTINGS);
    const expected = await inThread.run(feed(input), ['z', 'y']);
    await inThread.release();
    const worker = processWorker();
    expect(worker.kind).toBe('process');
    const model = await worker.load(TINY);
    expect(outputsOf(await model.run(feed(input), ['z', 'y']))).toEqual(outputsOf(expected));
  });

  it('runs requests sent together each on its own inputs (the messages read together share one buffer)', async () => {
    const worker = processWorker();
    const model = await worker.load(TINY);
    const inputs = [1, 2, 3, 4].map((scale) => randomF32(8, scale));
    const inThread = await loadModelHere(TINY, SETTINGS);
    const expected = await Promise.all(inputs.map(async (input) => outputsOf(await inThread.run(feed(input), ['y']))));
    await inThread.release();
    const runs = await Promise.all(inputs.map((input) => model.run(feed(input), ['y'])));
    expect(runs.map(outputsOf)).toEqual(expected);
  });

  it('fails a run that needs more memory than its limit with KERNEL_FAILED, and goes on serving', async () => {
    const worker = processWorker();
    const hungry = await worker.load(expandingModel(2 ** 30)); // a 4 GiB intermediate tensor
    await expectKernelFailed(hungry.run([{ name: 'x', shape: [1], data: Float32Array.of(1) }], ['y']), /Failed to allocate memory/);
    const small = await worker.load(expandingModel(1000)); // the same process, within its limit
    const run = await small.run([{ name: 'x', shape: [1], data: Float32Array.of(1) }], ['y']);
    expect(new Float32Array(Uint8Array.from(run.outputs[0].bytes).buffer)[0]).toBe(1000);
    expect(hungry.alive).toBe(true); // refused, not crashed
  });

  it('refuses a limit below what Node.js and onnxruntime need', () => {
    expect(() => new OnnxWorker(SETTINGS, undefined, undefined, 64 * 1024 * 1024)).toThrow(/at least 1082130432 bytes .* each of its 1 onnxruntime thread an 8 MiB stack/);
    expect(() => new OnnxWorker({ ...SETTINGS, threads: 16 }, undefined, undefined, 1082130432)).toThrow(/at least 1207959552 bytes/);
  });
});

describe('the onnx worker thread\'s answers (serveOnnxWorker on a channel in this thread)', () => {
  it('answers onnxruntime\'s refusals by their reason, and marks anything else internal', async () => {
    const { port1, port2 } = new MessageChannel();
    serveOnnxWorker(port1, SETTINGS);
    const answers: FromOnnxWorker[] = [];
    const answered = (count: number) => new Promise<void>((resolve) => {
      const check = () => {
        if (answers.length < count) return;
        port2.off('message', listener);
        resolve();
      };
      const listener = (message: FromOnnxWorker) => {
        answers.push(message);
        check();
      };
      port2.on('message', listener);
    });
    try {
      const ready = answered(3);
      port2.postMessage({ t: 'load', id: 1, model: new Uint8Array(Buffer.from('not an onnx model')) } satisfies ToOnnxWorker);
      port2.postMessage({ t: 'load', id: 2, model: new Uint8Array(TINY) } satisfies ToOnnxWorker);
      port2.postMessage({ t: 'run', id: 3, model: 9, feeds: [], outputNames: ['z'] } satisfies ToOnnxWorker); // never loaded
      await ready;
      const byId = new Map(answers.map((answer) => [answer.id, answer]));
      expect(byId.get(1)).toEqual({ t: 'failed', id: 1, message: expect.stringMatching(/^onnxruntime refused the model: /) });
      expect(byId.get(2)).toEqual({ t: 'loaded', id: 2 });
      expect(byId.get(3)).toEqual({ t: 'failed', id: 3, message: 'model 9 is not loaded in the onnx worker', internal: true });
    } finally {
      port2.postMessage({ t: 'release', model: 2 } satisfies ToOnnxWorker);
      await new Promise((resolve) => setTimeout(resolve, 20));
      port1.close();
    }
  });
});

class FakeModel implements LoadedModel {
  alive = true;
  releases = 0;
  run = async (): Promise<ModelRun> => ({ outputs: [], computeUs: 0 });
  release = async (): Promise<void> => {
    this.releases++;
    this.alive = false;
  };
}

const settled = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('onnx.run with a loader of its own', () => {
  it('copies the outputs into the session\'s buffers, then zeroes what the model returned', async () => {
    const returned = new Uint8Array(new Float32Array([1.5, -2, 3]).buffer);
    const model = new FakeModel();
    model.run = async () => ({ outputs: [{ name: 'y', bytes: returned }], computeUs: 7 });
    const memory = new DeviceMemory(1 << 20);
    [[1, 4], [2, 8], [3, 0]].forEach(([id, size]) => memory.allocate(id, size));
    memory.write(1).fill(1); // a model buffer may not be empty
    const kernel = createOnnxRunKernel(new OnnxSessionCache(SETTINGS, 4, async () => model));
    const launch = kernel.prepare(new Map<string, CborValue>(Object.entries({
      model: 1, inputNames: ['x'], inputBuffers: [2], inputShapes: [[2]], outputNames: ['y'], outputBuffers: [3],
    })), memory, CALLER);
    expect(await launch.run()).toBe(7);
    expect([...new Float32Array(Uint8Array.from(memory.read(3)).buffer)]).toEqual([1.5, -2, 3]);
    expect(returned.every((byte) => byte === 0)).toBe(true);
  });
});

describe('OnnxSessionCache with a loader of its own', () => {
  /** A cache whose loader makes a FakeModel per load (`loads`, in order), and one model digest. */
  const countingCache = () => {
    const loads: FakeModel[] = [];
    const cache = new OnnxSessionCache(SETTINGS, 4, async () => loads[loads.push(new FakeModel()) - 1]);
    return { loads, cache, digest: Buffer.alloc(48, 7) };
  };

  it('keeps the models of different enclave images apart: the same bytes load once per image', async () => {
    const { loads, cache, digest } = countingCache();
    const a = await cache.acquire(IMAGE_A, digest, TINY);
    const b = await cache.acquire(IMAGE_B, digest, TINY);
    expect(loads.length).toBe(2); // no image learns from a quick load that another loaded these bytes
    expect(b.model).not.toBe(a.model);
    const again = await cache.acquire(IMAGE_A, digest, TINY);
    expect(again.model).toBe(a.model); // a re-handshake of the same image reuses its model
    expect(loads.length).toBe(2);
    expect(cache.size).toBe(2);
    [a, b, again].forEach((lease) => lease.release());
    cache.close();
  });

  it('loads a digest once, loads it again once it is no longer alive, and releases the dead one when unused', async () => {
    const { loads, cache, digest } = countingCache();
    const a = await cache.acquire(IMAGE_A, digest, TINY);
    const b = await cache.acquire(IMAGE_A, digest, TINY);
    expect(loads.length).toBe(1);
    expect(b.model).toBe(a.model);

    loads[0].alive = false; // its worker thread stopped, say; `a` and `b` still hold it
    const c = await cache.acquire(IMAGE_A, digest, TINY);
    expect(loads.length).toBe(2);
    expect(c.model).toBe(loads[1]);
    expect(cache.size).toBe(1);
    await settled();
    expect(loads[0].releases).toBe(0);
    a.release();
    b.release();
    await settled();
    expect(loads[0].releases).toBe(1);

    const d = await cache.acquire(IMAGE_A, digest, TINY);
    expect(d.model).toBe(loads[1]);
    expect(loads.length).toBe(2);
    c.release();
    d.release();
    cache.close();
    await settled();
    expect(loads[1].releases).toBe(1);
  });
});
