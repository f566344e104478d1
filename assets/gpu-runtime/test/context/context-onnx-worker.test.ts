/**
 * A context with `onnxWorker`: onnx.run's models load and run in a worker thread, so one
 * session's long inference holds up neither another session's operations nor a new
 * session's handshake, and the outputs are those of a direct onnxruntime run.
 *
 * The ordering test needs no clock: the slow model is built and runs for more than a second,
 * and everything the other sessions do meanwhile must be answered before it is. In the main
 * thread (the default) the same steps would all wait for the inference.
 */
import { describe, expect, it } from 'vitest';
import { BUILTIN_KERNELS } from '../../src/kernels/builtins';
import { onnxModelDigest } from '../../src/kernels/registry';
import { TestEnclave, contextForTests, directRun, expandingModel, f32Bytes, f32Values, matMulChain, randomF32, uploadOnnxRun } from './helpers';

const enclave = new TestEnclave();

const shared = contextForTests(enclave, { onnxWorker: true });

const { openSession } = shared;

const SIDE = 1024; // 2 GFLOP per layer of matMulChain

describe('a context that runs onnx.run in a worker thread', () => {
  it('answers outputs identical to a direct onnxruntime run', async () => {
    const client = await openSession();
    const model = matMulChain(2, SIDE);
    const input = randomF32(SIDE * SIDE);
    const args = await uploadOnnxRun(client, model, input, [SIDE, SIDE]);
    const digest = onnxModelDigest(model);
    for (let run = 0; run < 2; run++) {
      const launch = await client.call({ op: 'launch', kernel: 'onnx.run', args }, { digest });
      expect(launch.result).toEqual({ ok: true });
      expect(launch.done.device).toBe('cpu');
    }
    const output = await client.call({ op: 'dtoh', buffer: 3 });
    expect(output.data!.equals(await directRun(model, input, [SIDE, SIDE], shared.context.onnx))).toBe(true);
    client.close();
  });

  it('answers other sessions, and lets a new one complete its handshake, while a long inference runs', async () => {
    const slow = await openSession();
    const model = matMulChain(160, SIDE); // about 340 GFLOP: more than a second on one thread of the build machine
    const args = await uploadOnnxRun(slow, model, randomF32(SIDE * SIDE), [SIDE, SIDE]);
    const digest = onnxModelDigest(model);

    let slowAnswered = false; // its model is built, then run, in the worker thread
    const sent = await slow.send({ op: 'launch', kernel: 'onnx.run', args }, { digest });
    const slowAnswer = slow.receive(sent.n, sent.digest).then((answer) => { slowAnswered = true; return answer; });

    const other = await openSession(); // a handshake, while the model runs
    await other.call({ op: 'malloc', buffer: 1, size: 8 });
    await other.call({ op: 'htod', buffer: 1, size: 8 }, { data: f32Bytes([1.5, -2]) });
    await other.call({ op: 'malloc', buffer: 2, size: 8 });
    const add = await other.call({ op: 'launch', kernel: 'add', args: new Map(Object.entries({ a: 1, b: 1, out: 2, count: 2 })) }, { digest: BUILTIN_KERNELS.add.digest });
    expect(add.result).toEqual({ ok: true });
    expect([...f32Values((await other.call({ op: 'dtoh', buffer: 2 })).data!)]).toEqual([3, -4]);
    expect(slowAnswered).toBe(false);

    const answer = await slowAnswer;
    expect(answer.result).toEqual({ ok: true });
    expect(answer.done.computeUs).toBeGreaterThan(100_000); // the premise: it ran long enough to matter
    other.close();
    slow.close();
  });
});

const limited = contextForTests(enclave, { onnxProcessMemoryLimit: 2 * 1024 ** 3 }); // room for Node.js 24 and tsx's loader thread

describe('a context that runs onnx.run in a memory-limited worker process', () => {
  const hungry = expandingModel(2 ** 30); // a 4 GiB intermediate tensor

  it('answers a model that needs more than the limit with KERNEL_FAILED, and the session goes on', async () => {
    const client = await limited.openSession();
    const args = await uploadOnnxRun(client, hungry, Float32Array.of(1), [1]);
    const launch = await client.call({ op: 'launch', kernel: 'onnx.run', args }, { digest: onnxModelDigest(hungry) });
    expect(launch.result).toMatchObject({ ok: false, code: 'KERNEL_FAILED', reason: expect.stringMatching(/Failed to allocate memory/) });

    const model = matMulChain(1, 64);
    const input = randomF32(64 * 64);
    await client.call({ op: 'free', buffer: 1 });
    await client.call({ op: 'free', buffer: 2 });
    await client.call({ op: 'free', buffer: 3 });
    const fine = await uploadOnnxRun(client, model, input, [64, 64]);
    expect((await client.call({ op: 'launch', kernel: 'onnx.run', args: fine }, { digest: onnxModelDigest(model) })).result).toEqual({ ok: true });
    expect((await client.call({ op: 'dtoh', buffer: 3 })).data!.equals(await directRun(model, input, [64, 64], limited.context.onnx))).toBe(true);
    client.close();
  });
});
