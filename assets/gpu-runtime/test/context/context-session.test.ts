/**
 * Whole sessions over a real Unix socket: the test plays SGS and the EGP (simulated NSM,
 * answerHello, sealed frames) against a real ExecutionContext, running malloc, htod,
 * launches (built-ins and onnx.run), dtoh and free, pipelined and in chunks.
 */
import { describe, expect, it } from 'vitest';
import { MAX_CHUNK_BYTES } from '../../src/abe/limits';
import { BUILTIN_KERNELS } from '../../src/kernels/builtins';
import { onnxModelDigest } from '../../src/kernels/registry';
import { DataType, encodeModel, floatTensor } from '../../src/onnx/onnx-writer';
import { encodeControl } from '../../src/protocol/control';
import { TestClient, TestEnclave, contextForTests, directRun, f32Bytes, f32Values, matMulChain, randomF32, startContext, uploadOnnxRun } from './helpers';

const enclave = new TestEnclave();
const log: string[] = [];

const shared = contextForTests(enclave, { log: (line) => log.push(line) });

const { openSession } = shared;

describe('a session', () => {
  it('runs malloc, htod, relu, dtoh and free, and reports what ran', async () => {
    const client = await openSession();
    const input = Float32Array.of(-2, -0.5, 0, 1.5, 3, -7, 8, 0.25);
    expect((await client.call({ op: 'malloc', buffer: 1, size: 32 })).result).toEqual({ ok: true });
    expect((await client.call({ op: 'malloc', buffer: 2, size: 32 })).result).toEqual({ ok: true });
    const upload = await client.call({ op: 'htod', buffer: 1, size: 32 }, { data: f32Bytes(input) });
    expect(upload.result).toEqual({ ok: true });
    expect(upload.done).toMatchObject({ t: 'done', kernel: 'htod', computeUs: 0 });
    expect(upload.done.codeSha384.equals(Buffer.alloc(48))).toBe(true);
    expect(upload.done.device).toBeUndefined(); // ran no kernel

    const launch = await client.call(
      { op: 'launch', kernel: 'relu', args: new Map<string, number>([['input', 1], ['out', 2], ['count', 8]]) },
      { digest: BUILTIN_KERNELS.relu.digest },
    );
    expect(launch.result).toEqual({ ok: true });
    expect(launch.done.kernel).toBe('relu');
    expect(launch.done.device).toBe('cpu'); // built-ins are JavaScript
    expect(launch.done.codeSha384.equals(BUILTIN_KERNELS.relu.digest)).toBe(true);
    expect(Number.isSafeInteger(launch.done.computeUs)).toBe(true);

    const download = await client.call({ op: 'dtoh', buffer: 2 });
    expect(download.result).toEqual({ ok: true, size: 32 });
    expect([...f32Values(download.data!)]).toEqual([0, 0, 0, 1.5, 3, 0, 8, 0.25]);
    expect((await client.call({ op: 'free', buffer: 1 })).result).toEqual({ ok: true });
    expect((await client.call({ op: 'dtoh', buffer: 1 })).result).toMatchObject({ ok: false, code: 'NO_SUCH_BUFFER' });
    client.close();
  });

  it('keeps pipelined operations in order (gemm then add then dtoh, sent before any answer)', async () => {
    const client = await openSession();
    const [m, n, k] = [3, 5, 4];
    const a = randomF32(m * k);
    const b = randomF32(k * n);
    const sent = [
      await client.send({ op: 'malloc', buffer: 10, size: a.byteLength }),
      await client.send({ op: 'malloc', buffer: 11, size: b.byteLength }),
      await client.send({ op: 'malloc', buffer: 12, size: m * n * 4 }),
      await client.send({ op: 'htod', buffer: 10, size: a.byteLength }, { data: f32Bytes(a) }),
      await client.send({ op: 'htod', buffer: 11, size: b.byteLength }, { data: f32Bytes(b) }),
      await client.send({ op: 'launch', kernel: 'gemm', args: new Map(Object.entries({ a: 10, b: 11, c: 12, m, n, k })) }, { digest: BUILTIN_KERNELS.gemm.digest }),
      await client.send({ op: 'launch', kernel: 'add', args: new Map(Object.entries({ a: 12, b: 12, out: 12, count: m * n })) }, { digest: BUILTIN_KERNELS.add.digest }),
      await client.send({ op: 'dtoh', buffer: 12 }),
    ];
    const answers = [];
    for (const { n: op, digest } of sent) answers.push(await client.receive(op, digest));
    expect(answers.map((x) => x.result.ok)).toEqual(Array(8).fill(true));
    const c = f32Values(answers[7].data!);
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
      let sum = 0;
      for (let p = 0; p < k; p++) sum += a[i * k + p] * b[p * n + j];
      expect(c[i * n + j]).toBe(Math.fround(Math.fround(sum) * 2));
    }
    client.close();
  });

  it('moves buffers larger than a chunk both ways, byte for byte', async () => {
    const client = await openSession();
    const size = 2 * MAX_CHUNK_BYTES + 12345;
    const data = Buffer.alloc(size);
    for (let i = 0; i + 4 <= size; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, i);
    await client.call({ op: 'malloc', buffer: 7, size });
    expect((await client.call({ op: 'htod', buffer: 7, size }, { data })).result).toEqual({ ok: true });
    const back = await client.call({ op: 'dtoh', buffer: 7 });
    expect(back.result).toEqual({ ok: true, size });
    expect(back.data!.equals(data)).toBe(true);
    client.close();
  });

  // The queue of records waiting behind a stalled answer pauses the socket above its bound;
  // control records counted for nothing, so a peer that stopped reading our answers could
  // make the context read and keep them without end. And such a peer cannot hold up the
  // context's close(): the server closes only once every connection has.
  it('stops reading a peer that sends control records while it does not read the answers, and closes despite it', async () => {
    const own = await startContext(enclave, { closeGraceMs: 300 });
    const client = await TestClient.open(own.context.address, enclave.identity());
    const size = 16 * 1024 * 1024;
    await client.call({ op: 'malloc', buffer: 1, size });
    const socket = client.connection.socket;
    socket.pause(); // the answers to come stay unread
    await client.send({ op: 'dtoh', buffer: 1 }); // its 16 MiB answer waits for a drain that does not come
    const reply = encodeControl({ t: 'reply', reply: Buffer.alloc(20_000) });
    const sent = 24 * 1024 * 1024;
    for (let bytes = 0; bytes < sent; bytes += reply.length) socket.write(reply);
    await new Promise((resolve) => setTimeout(resolve, 500));
    // The context took at most its queue's 8 MiB, and the kernel's buffers a little more: the rest waits here.
    expect(socket.writableLength).toBeGreaterThan(sent - 12 * 1024 * 1024);
    const closing = Date.now();
    await own.stop();
    expect(Date.now() - closing).toBeLessThan(5_000);
    socket.destroy();
  });

  it('handles empty buffers: malloc 0, htod 0 (with or without an empty data chunk), dtoh 0', async () => {
    const client = await openSession();
    await client.call({ op: 'malloc', buffer: 1, size: 0 });
    expect((await client.call({ op: 'htod', buffer: 1, size: 0 })).result).toEqual({ ok: true });
    expect((await client.call({ op: 'htod', buffer: 1, size: 0 }, { data: Buffer.alloc(0) })).result).toEqual({ ok: true });
    const back = await client.call({ op: 'dtoh', buffer: 1 });
    expect(back.result).toEqual({ ok: true, size: 0 });
    expect(back.data!.length).toBe(0);
    client.close();
  });

  it('runs an ONNX model uploaded in chunks, with outputs identical to a direct run', async () => {
    const client = await openSession();
    const weights = randomF32(64 * 4096, 0.1); // 1 MiB of weights: the model spans two chunks
    const model = encodeModel({
      irVersion: 8,
      opsetImports: [{ version: 17 }],
      graph: {
        name: 'dense',
        nodes: [
          { opType: 'MatMul', inputs: ['x', 'w'], outputs: ['h'] },
          { opType: 'Relu', inputs: ['h'], outputs: ['y'] },
        ],
        inputs: [{ name: 'x', elemType: DataType.FLOAT, shape: [2, 64] }],
        outputs: [{ name: 'y', elemType: DataType.FLOAT, shape: [2, 4096] }],
        initializers: [floatTensor('w', [64, 4096], weights)],
      },
    });
    const input = randomF32(128);
    const args = await uploadOnnxRun(client, model, input, [2, 64]);
    const digest = onnxModelDigest(model);
    for (let run = 0; run < 2; run++) {
      const launch = await client.call({ op: 'launch', kernel: 'onnx.run', args }, { digest });
      expect(launch.result).toEqual({ ok: true });
      expect(launch.done.kernel).toBe('onnx.run');
      expect(launch.done.codeSha384.equals(digest)).toBe(true);
    }
    const output = await client.call({ op: 'dtoh', buffer: 3 });

    expect(output.data!.equals(await directRun(model, input, [2, 64], shared.context.onnx))).toBe(true);
    client.close();
  });

  it('loads a model once per enclave image: sessions of one image share it, another image\'s load their own', async () => {
    const other = new TestEnclave(enclave.nsm, 'other-image');
    const { context, stop } = await startContext(enclave, { expectedPcrs: undefined, allowAnyImage: true });
    try {
      const model = matMulChain(1, 4);
      const run = async (image: TestEnclave) => {
        const client = await TestClient.open(context.address, image.identity());
        const args = await uploadOnnxRun(client, model, randomF32(16), [4, 4]);
        expect((await client.call({ op: 'launch', kernel: 'onnx.run', args }, { digest: onnxModelDigest(model) })).result).toEqual({ ok: true });
        client.close();
      };
      await run(enclave);
      await run(enclave); // a new session of the same image (a re-handshake) finds the model loaded
      expect(context.loadedModelCount).toBe(1);
      await run(other); // the same bytes from another image load apart: no timing tells it what the first loaded
      expect(context.loadedModelCount).toBe(2);
    } finally {
      await stop();
    }
  });

  it('logs one line when a session is ready and one when it ends, with no key material', async () => {
    const client = await openSession();
    await client.call({ op: 'malloc', buffer: 1, size: 4 });
    client.close();
    const id = client.session!.sessionId.toString('hex');
    const lines = () => log.filter((line) => line.includes(id));
    await waitFor(() => lines().length >= 2);
    expect(lines()[0]).toBe(`session ${id} ready: enclave PCR0 ${enclave.pcrs[0].toString('hex').slice(0, 16)}...`);
    expect(lines()[1]).toBe(`session ${id} ended after 1 operations: closed`);
  });

  it('serves concurrent sessions independently: the same buffer ids never collide', async () => {
    const clients = await Promise.all(Array.from({ length: 8 }, () => openSession()));
    await Promise.all(clients.map(async (client, i) => {
      await client.call({ op: 'malloc', buffer: 1, size: 4 });
      await client.call({ op: 'htod', buffer: 1, size: 4 }, { data: f32Bytes([i]) });
    }));
    const values = await Promise.all(clients.map(async (client) => f32Values((await client.call({ op: 'dtoh', buffer: 1 })).data!)[0]));
    expect(values).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    clients.forEach((client) => client.close());
  });
});

async function waitFor(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 5));
}
