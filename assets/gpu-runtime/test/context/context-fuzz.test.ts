/**
 * Fuzzing a real context over a real Unix socket, sized for CI (over 100 000 records in
 * well under a minute on two cores; EGPU_FUZZ_SCALE multiplies the counts, EGPU_FUZZ_SEED
 * replays a run):
 *
 * 1. sealed operations with random requests, arguments, digests and data, correctly sealed
 *    under the session key and pipelined in batches: every one is answered {ok: true} or
 *    {ok: false} with a typed failure code, and the session survives all of them;
 * 2. connections fed random and mutated records before any session: each ends with a
 *    typed {t: error} or a clean close, and nothing else is ever sent back but a hello;
 * 3. established sessions attacked once (a bit flipped, a frame cut, a replay, chunks out
 *    of order, the wrong direction, raw garbage, control messages out of place): each ends
 *    with a typed error or a clean close, and no answer.
 *
 * No crash (an uncaught error fails the run), no hang (the test timeout), and afterwards the
 * context still serves a new session and holds none of the old ones.
 */
import { randomBytes } from 'node:crypto';
import { connect as netConnect } from 'node:net';
import fc from 'fast-check';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { ENCLAVE_TO_HOST, HOST_TO_ENCLAVE } from '../../src/abe/frame-header';
import { FrameReader } from '../../src/abe/frame-reader';
import { BUILTIN_KERNELS } from '../../src/kernels/builtins';
import { OPERATION_FAILURE_CODES } from '../../src/kernels/operation-error';
import { onnxModelDigest } from '../../src/kernels/registry';
import { DataType, encodeModel, floatTensor } from '../../src/onnx/onnx-writer';
import { ControlMessage, decodeControl } from '../../src/protocol/control';
import { DESCRIPTOR_BUFFER, encodeRequest } from '../../src/protocol/op-descriptor';
import { Address } from '../../src/protocol/transport';
import { WIRE_ERROR_CODES } from '../../src/protocol/wire-error';
import { FuzzOperation, SessionAttack, fuzzOperation, rawRecord, sessionAttack } from './fuzz-arbitraries';
import { TestClient, TestEnclave, contextForTests, f32Bytes, randomF32 } from './helpers';

const SCALE = Number(process.env.EGPU_FUZZ_SCALE ?? 1);
const SEED = Number(process.env.EGPU_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const SEALED_SESSIONS = 8;
const SEALED_OPERATIONS = Math.ceil(64_000 * SCALE);
const RAW_CONNECTIONS = Math.ceil(36_000 * SCALE);
const ATTACKED_SESSIONS = Math.ceil(500 * SCALE);
const BATCH = 100;
const RAW_PARALLEL = 16;

const MODEL = encodeModel({
  irVersion: 8,
  opsetImports: [{ version: 17 }],
  graph: {
    name: 'fuzz',
    nodes: [
      { opType: 'Add', inputs: ['x', 'bias'], outputs: ['s'] },
      { opType: 'Relu', inputs: ['s'], outputs: ['r'] },
      { opType: 'Softmax', inputs: ['r'], outputs: ['z'], attributes: [{ name: 'axis', type: 'int', value: -1 }] },
    ],
    inputs: [{ name: 'x', elemType: DataType.FLOAT, shape: ['batch', 8] }],
    outputs: [{ name: 'z', elemType: DataType.FLOAT, shape: ['batch', 8] }, { name: 'r', elemType: DataType.FLOAT, shape: ['batch', 8] }],
    initializers: [floatTensor('bias', [8], randomF32(8))],
  },
});

const enclave = new TestEnclave();
const counted = { sealed: 0, sealedFrames: 0, raw: 0, rawRecords: 0, attacked: 0 };
/** How the sealed operations came out, by done-message kernel and result: the run must reach the kernels, not just the decoders. */
const outcomes = new Map<string, number>();
/** How the raw connections and attacked sessions ended: an error code, or 'clean'. */
const endings = new Map<string, number>();

const shared = contextForTests(enclave, { memoryCap: 1 << 20 });
afterAll(() => {
  console.log(`context fuzz (seed ${SEED}): ${counted.sealed} sealed operations in ${counted.sealedFrames} frames, ${counted.raw} raw connections fed ${counted.rawRecords} records, ${counted.attacked} attacked sessions`);
  console.log(`  sealed outcomes: ${[...outcomes].sort().map(([k, v]) => `${k} ${v}`).join(', ')}`);
  console.log(`  endings: ${[...endings].sort().map(([k, v]) => `${k} ${v}`).join(', ')}`);
});

const { openSession } = shared;

/**
 * Buffers 1-4 hold f32 data, 5 the model, 6-7 are empty outputs: most random launches find
 * something to run on. Random operations free and overwrite them, so every batch starts by
 * putting them back (pipelined; the frees of buffers already gone fail cleanly).
 */
async function restoreBuffers(client: TestClient): Promise<void> {
  const sent: { n: number; digest: Buffer }[] = [];
  for (let id = 1; id <= 7; id++) sent.push(await client.send({ op: 'free', buffer: id }));
  for (let id = 1; id <= 4; id++) {
    sent.push(await client.send({ op: 'malloc', buffer: id, size: 256 }));
    sent.push(await client.send({ op: 'htod', buffer: id, size: 256 }, { data: f32Bytes(randomF32(64, 5)) }));
  }
  sent.push(await client.send({ op: 'malloc', buffer: 5, size: MODEL.length }));
  sent.push(await client.send({ op: 'htod', buffer: 5, size: MODEL.length }, { data: MODEL }));
  sent.push(await client.send({ op: 'malloc', buffer: 6, size: 0 }));
  sent.push(await client.send({ op: 'malloc', buffer: 7, size: 0 }));
  for (const [i, { n, digest }] of sent.entries()) {
    const answer = await client.receive(n, digest);
    if (i >= 7) expect(answer.result, `seed ${SEED}: restoring buffers`).toMatchObject({ ok: true });
  }
}

function digestFor(op: FuzzOperation): Buffer {
  switch (op.digest) {
    case 'zero': return Buffer.alloc(48);
    case 'random': return randomBytes(48);
    case 'other': return BUILTIN_KERNELS.gemm.digest;
    case 'right':
      if (op.kernel === 'onnx.run') return onnxModelDigest(MODEL);
      return op.kernel !== undefined && Object.hasOwn(BUILTIN_KERNELS, op.kernel) ? BUILTIN_KERNELS[op.kernel as keyof typeof BUILTIN_KERNELS].digest : Buffer.alloc(48);
  }
}

/** The frames of `op`, sealed as operation n. */
function seal(client: TestClient, op: FuzzOperation): { n: number; digest: Buffer; frames: Buffer[] } {
  const n = client.n++;
  const digest = digestFor(op);
  const sealer = client.session!.sealer(n, ENCLAVE_TO_HOST, digest);
  const frames = [sealer.seal(DESCRIPTOR_BUFFER, op.descriptor, op.chunks.length === 0)];
  op.chunks.forEach((chunk, i) => frames.push(sealer.seal(chunk.buffer, chunk.bytes, i === op.chunks.length - 1)));
  return { n, digest, frames };
}

async function expectAnswered(client: TestClient, n: number, digest: Buffer, what: () => string): Promise<void> {
  let answer;
  try {
    answer = await client.receive(n, digest);
  } catch (error) {
    throw new Error(`seed ${SEED}: operation ${n} was not answered (${(error as Error).message}): ${what()}`);
  }
  if (!answer.result.ok) expect(OPERATION_FAILURE_CODES, `seed ${SEED}: ${what()}`).toContain(answer.result.code);
  expect(answer.done.n).toBe(n);
  const known = ['add', 'relu', 'softmax', 'gemm', 'onnx.run', 'malloc', 'free', 'htod', 'dtoh', 'invalid'];
  const key = `${known.includes(answer.done.kernel) ? answer.done.kernel : '(other)'}:${answer.result.ok ? 'ok' : answer.result.code}`;
  outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
}

describe('fuzzing the execution context', () => {
  it(`answers ${SEALED_OPERATIONS} random sealed operations, each with a result, in sessions that survive them all`, async () => {
    const perSession = Math.ceil(SEALED_OPERATIONS / SEALED_SESSIONS);
    for (let s = 0; s < SEALED_SESSIONS; s++) {
      const client = await openSession();
      for (let done = 0; done < perSession; done += BATCH) {
        await restoreBuffers(client);
        const operations = fc.sample(fuzzOperation, { numRuns: Math.min(BATCH, perSession - done), seed: SEED + s * 100_003 + done });
        const sealed = operations.map((op) => seal(client, op));
        await client.connection.send(Buffer.concat(sealed.flatMap((op) => op.frames)));
        for (const [i, { n, digest }] of sealed.entries()) {
          await expectAnswered(client, n, digest, () => describeOperation(operations[i]));
        }
        counted.sealed += sealed.length;
        counted.sealedFrames += sealed.reduce((sum, op) => sum + op.frames.length, 0);
      }
      expect(client.isClosed).toBe(false);
      client.close();
    }
    expect(counted.sealed).toBeGreaterThanOrEqual(SEALED_OPERATIONS);
    // Every kernel ran for real, and every kind of clean failure occurred (checked at full
    // size only: a scaled-down run may, by chance, miss the rarer ones).
    if (SCALE < 1) return;
    for (const kernel of ['add', 'relu', 'softmax', 'gemm', 'onnx.run', 'malloc', 'free', 'htod', 'dtoh']) expect(outcomes.get(`${kernel}:ok`) ?? 0, kernel).toBeGreaterThan(0);
    const codes = new Set([...outcomes.keys()].map((key) => key.split(':')[1]));
    for (const code of OPERATION_FAILURE_CODES) expect(codes, code).toContain(code);
  }, 600_000);

  it(`ends ${RAW_CONNECTIONS} connections fed random and mutated records with a typed error or a clean close`, async () => {
    const inputs = fc.sample(fc.array(rawRecord, { minLength: 1, maxLength: 3 }), { numRuns: RAW_CONNECTIONS, seed: SEED });
    let next = 0;
    await Promise.all(Array.from({ length: RAW_PARALLEL }, async () => {
      while (next < inputs.length) {
        const records = inputs[next++];
        const replies = await exchange(shared.context.address, Buffer.concat(records));
        checkRefusal(replies, () => records.map((r) => r.toString('hex').slice(0, 120)).join(' | '));
        counted.raw++;
        counted.rawRecords += records.length;
      }
    }));
    expect(counted.raw).toBe(RAW_CONNECTIONS);
  }, 600_000);

  it(`ends ${ATTACKED_SESSIONS} established sessions attacked once with a typed error or a clean close, and no answer`, async () => {
    const plans = fc.sample(fc.record({ before: fc.array(fuzzOperation, { maxLength: 3 }), attack: sessionAttack }), { numRuns: ATTACKED_SESSIONS, seed: SEED + 7 });
    for (const plan of plans) {
      const client = await openSession();
      let last: { n: number; frames: Buffer[] } | undefined;
      for (const op of plan.before) {
        const sealed = seal(client, op);
        for (const frame of sealed.frames) await client.connection.send(Buffer.from(frame));
        await expectAnswered(client, sealed.n, sealed.digest, () => describeOperation(op));
        last = sealed;
      }
      await client.connection.send(await attackRecord(client, plan.attack, last));
      client.connection.socket.end(); // so a record left incomplete ends the stream
      const replies: ControlMessage[] = [];
      for (;;) {
        const record = await client.next();
        if ('closed' in record) break;
        if ('frame' in record) throw new Error(`seed ${SEED}: attack ${JSON.stringify(plan.attack)} was answered with a frame`);
        replies.push(record.control);
      }
      checkRefusal(replies, () => JSON.stringify(plan.attack));
      counted.attacked++;
    }
  }, 600_000);

  it('still serves a new session afterwards, and holds none of the old ones', async () => {
    await vi.waitFor(() => expect(shared.context.sessionCount).toBe(0));
    const client = await openSession();
    await client.call({ op: 'malloc', buffer: 1, size: 16 });
    expect((await client.call({ op: 'htod', buffer: 1, size: 16 }, { data: f32Bytes([1, -2, 3, -4]) })).result).toEqual({ ok: true });
    client.close();
    expect(counted.sealed + counted.raw + counted.attacked).toBeGreaterThanOrEqual(100_000 * Math.min(SCALE, 1));
  });
});

/** What the context may say to a connection it refuses: at most a hello, then at most one typed error, last. */
function checkRefusal(replies: readonly ControlMessage[], what: () => string): void {
  const last = replies.at(-1);
  const ending = last?.t === 'error' ? last.code : 'clean';
  endings.set(ending, (endings.get(ending) ?? 0) + 1);
  replies.forEach((reply, i) => {
    if (reply.t === 'error') {
      expect(WIRE_ERROR_CODES, `seed ${SEED}: ${what()}`).toContain(reply.code);
      expect(i, `seed ${SEED}: an error must be the last message: ${what()}`).toBe(replies.length - 1);
    } else {
      expect(reply.t, `seed ${SEED}: unexpected reply to ${what()}`).toBe('hello');
    }
  });
}

/** Writes `bytes`, ends the stream, and returns what came back before the close, decoded. */
function exchange(address: Address, bytes: Buffer): Promise<ControlMessage[]> {
  if (address.kind !== 'unix') throw new Error('unix only');
  return new Promise((resolve, reject) => {
    const received: Buffer[] = [];
    const socket = netConnect(address.path);
    socket.on('data', (chunk) => received.push(chunk));
    socket.on('error', () => undefined); // a reset after the context refuses: the close below still comes
    socket.on('close', () => {
      try {
        const records = new FrameReader().push(Buffer.concat(received));
        resolve(records.map((record) => {
          if (record[4] === 0x83) throw new Error('a frame was sent to a connection without a session');
          return decodeControl(record);
        }));
      } catch (error) {
        reject(error);
      }
    });
    socket.on('connect', () => socket.end(bytes));
  });
}

/** The bytes of one attack on an established session (see SessionAttack). */
async function attackRecord(client: TestClient, attack: SessionAttack, last: { n: number; frames: Buffer[] } | undefined): Promise<Buffer> {
  const valid = () => client.frames({ op: 'malloc', buffer: 99, size: 4 }).frames[0];
  switch (attack.kind) {
    case 'flip': {
      const frame = Buffer.from(valid());
      frame[attack.at % frame.length] ^= 1 << attack.bit;
      return frame;
    }
    case 'truncate': {
      const frame = valid();
      const body = frame.subarray(4, 4 + (attack.keep % (frame.length - 4)));
      const cut = Buffer.alloc(4 + body.length);
      cut.writeUInt32BE(body.length, 0);
      body.copy(cut, 4);
      return cut;
    }
    case 'replay': {
      if (last) return Buffer.concat(last.frames);
      const op = client.frames({ op: 'free', buffer: 99 });
      await client.connection.send(Buffer.concat(op.frames));
      await client.receive(op.n, op.digest);
      return Buffer.concat(op.frames);
    }
    case 'reorder': {
      // htod in two data chunks, the first of them skipped.
      const sealer = client.session!.sealer(client.n++, ENCLAVE_TO_HOST, Buffer.alloc(48));
      const request = sealer.seal(DESCRIPTOR_BUFFER, encodeRequest({ op: 'htod', buffer: 1, size: 8 }), false);
      sealer.seal(1, Buffer.alloc(4), false);
      return Buffer.concat([request, sealer.seal(1, Buffer.alloc(4), true)]);
    }
    case 'wrong-direction':
      return client.session!.sealer(client.n++, HOST_TO_ENCLAVE, Buffer.alloc(48)).seal(DESCRIPTOR_BUFFER, encodeRequest({ op: 'free', buffer: 1 }), true);
    case 'raw':
    case 'control':
      return attack.record;
  }
}

function describeOperation(op: FuzzOperation): string {
  return `descriptor ${op.descriptor.toString('hex').slice(0, 200)}, digest ${op.digest}, chunks ${op.chunks.map((c) => `${c.buffer}:${c.bytes.length}`).join(',')}`;
}
