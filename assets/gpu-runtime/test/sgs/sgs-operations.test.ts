/**
 * Operations through SGS over real sockets: relayed in order (pipelined), replays refused,
 * queue bounds answered BUSY and then served on resend, sessions served in turn, deadlines,
 * a crashed context, and the kernel-attestation log. SGS sees only ciphertext throughout: the
 * fake EGP and fake context hold the keys.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { MAX_CHUNK_BYTES, MAX_FRAME_BYTES } from '../../src/abe/limits';
import { SimulatedNsm } from '../../src/attestation/simulated-nsm';
import { KernelAttestationRecord } from '../../../../lib/observability/metric-catalogue';
import { INCREMENT_DIGEST, INCREMENT_KERNEL, NO_KERNEL } from './fake-context';
import { FakeEgp } from './fake-egp';
import { IMAGE_DIMENSION, until } from './fixtures';
import { Harness } from './harness';

const nsm = SimulatedNsm.create();
let harness: Harness | undefined;

afterEach(async () => {
  await harness?.stop();
  harness = undefined;
});

async function start(overrides: Record<string, unknown> = {}): Promise<Harness> {
  harness = await Harness.start(nsm, overrides);
  return harness;
}

const launch = (buffer: number) => ({ op: 'launch' as const, kernel: INCREMENT_KERNEL, args: new Map([['buffer', buffer]]) });

describe('SGS relays operations', () => {
  it('relays malloc, htod, a launch and dtoh, and adds queueUs to each done', async () => {
    const { session } = await start();
    const egp = await session.call(harness!);
    const input = randomBytes(1000);
    expect((await egp.call(1, { op: 'malloc', buffer: 1, size: input.length })).result).toEqual({ ok: true });
    expect((await egp.call(2, { op: 'htod', buffer: 1, size: input.length }, input)).result).toEqual({ ok: true });
    const launched = await egp.call(3, launch(1), undefined, INCREMENT_DIGEST);
    expect(launched.result).toEqual({ ok: true });
    expect(launched.done).toMatchObject({ t: 'done', n: 3, kernel: INCREMENT_KERNEL, codeSha384: INCREMENT_DIGEST });
    expect(launched.done.queueUs).toBeGreaterThanOrEqual(0);
    const read = await egp.call(4, { op: 'dtoh', buffer: 1 });
    expect(read.result).toEqual({ ok: true, size: input.length });
    expect(read.data.equals(Buffer.from(input.map((b) => (b + 1) & 0xff)))).toBe(true);
  });

  it('relays a buffer of several chunks both ways', async () => {
    const { session } = await start();
    const egp = await session.call(harness!);
    const input = randomBytes(3 * MAX_CHUNK_BYTES + 12345);
    await egp.call(1, { op: 'htod', buffer: 7, size: input.length }, input);
    const read = await egp.call(2, { op: 'dtoh', buffer: 7 });
    expect(read.data.equals(input)).toBe(true);
  });

  it('forwards an operation\'s first frames to the context before its last frame arrives (cut-through)', async () => {
    const h = await start();
    const egp = await h.session();
    const input = randomBytes(2 * MAX_CHUNK_BYTES + 1);
    const frames = egp.seal(1, { op: 'htod', buffer: 3, size: input.length }, input);
    expect(frames).toHaveLength(4); // the descriptor and three chunks
    egp.send(frames.slice(0, 2));
    await until(() => h.context.frames.length === 2, 'the descriptor and the first chunk to reach the context');
    expect(h.context.frames).toEqual([{ n: 1, chunk: 0 }, { n: 1, chunk: 1 }]);
    expect(h.context.received).toEqual([]); // not complete there yet
    egp.send(frames.slice(2));
    expect((await egp.answer(1)).result).toEqual({ ok: true });
    expect((await egp.call(2, { op: 'dtoh', buffer: 3 })).data.equals(input)).toBe(true);
  });

  it('holds a later operation\'s frames while the slots are taken, and forwards them whole once one frees', async () => {
    const h = await start({ maxInFlight: 1 });
    const egp = await h.session();
    h.context.hold = true;
    egp.send(egp.seal(1, { op: 'malloc', buffer: 1, size: 4 }));
    await until(() => h.context.heldCount === 1, 'operation 1 to be held at the context');
    const data = randomBytes(MAX_CHUNK_BYTES + 1);
    const frames = egp.seal(2, { op: 'htod', buffer: 1, size: data.length }, data);
    egp.send(frames.slice(0, 1));
    await until(() => h.sgs.stats().queued === 1, 'operation 2 to be queued in SGS');
    expect(h.sgs.stats()).toMatchObject({ queued: 1, inFlight: 1 });
    expect(h.context.frames.filter((f) => f.n === 2)).toEqual([]); // no slot: operation 2 waits in SGS
    egp.send(frames.slice(1));
    h.context.hold = false;
    h.context.release();
    expect((await egp.answer(1)).result).toEqual({ ok: true });
    expect((await egp.answer(2)).result).toEqual({ ok: true });
    expect(h.context.frames.filter((f) => f.n === 2).map((f) => f.chunk)).toEqual([0, 1, 2]);
  });

  it('keeps pipelined operations in order', async () => {
    const h = await start({ maxInFlight: 3 });
    const egp = await h.session();
    const data = Buffer.from([1, 2, 3]);
    egp.send(egp.seal(1, { op: 'htod', buffer: 1, size: 3 }, data));
    for (let n = 2; n <= 9; n++) egp.send(egp.seal(n, launch(1), undefined, INCREMENT_DIGEST));
    egp.send(egp.seal(10, { op: 'dtoh', buffer: 1 }));
    for (let n = 1; n <= 9; n++) expect((await egp.answer(n)).result).toEqual({ ok: true });
    expect([...(await egp.answer(10)).data]).toEqual([9, 10, 11]);
    expect(h.context.received.map((op) => op.n)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });
});

describe('SGS refuses replays', () => {
  it('answers REPLAY when an operation number is not above the last accepted, and ends the session', async () => {
    const h = await start();
    const egp = await h.session();
    const frames = egp.seal(1, { op: 'malloc', buffer: 1, size: 8 });
    egp.send(frames);
    await egp.answer(1);
    egp.send(frames);
    const error = await egp.expectError('REPLAY');
    expect(error.n).toBe(1);
    expect(h.context.received).toHaveLength(1);
  });

  it('refuses an operation numbered below one already accepted, even one never seen', async () => {
    const h = await start();
    const egp = await h.session();
    const three = egp.seal(3, { op: 'malloc', buffer: 1, size: 8 });
    const five = egp.seal(5, { op: 'malloc', buffer: 2, size: 8 });
    egp.send(five);
    await egp.answer(5);
    egp.send(three);
    expect((await egp.expectError('REPLAY')).n).toBe(3);
    expect(h.context.received.map((op) => op.n)).toEqual([5]);
  });
});

describe('SGS bounds each session\'s queue', () => {
  it('answers BUSY with retryAfterMs past queueBound, drops the frames, and serves the same frames resent', async () => {
    const h = await start({ maxInFlight: 1, partitions: { default: { gpuShare: 1, memoryCapBytes: 64 * 1024 * 1024, queueBound: 2 } } });
    h.context.hold = true;
    const egp = await h.session();
    const ops = [1, 2, 3, 4, 5].map((n) => egp.seal(n, { op: 'malloc', buffer: n, size: 8 }));
    for (const frames of ops) egp.send(frames); // 1 in flight (held), 2 and 3 queued, 4 over the bound, 5 behind 4
    const busy4 = await egp.expectError('BUSY');
    expect(busy4).toMatchObject({ n: 4 });
    expect(busy4.retryAfterMs).toBeGreaterThan(0);
    expect(await egp.expectError('BUSY')).toMatchObject({ n: 5 });
    expect(h.sgs.stats()).toMatchObject({ queued: 2, inFlight: 1 });
    h.context.hold = false;
    h.context.release();
    for (const n of [1, 2, 3]) await egp.answer(n);
    egp.send(ops[3]);
    egp.send(ops[4]);
    await egp.answer(4);
    await egp.answer(5);
    expect(h.context.received.map((op) => op.n)).toEqual([1, 2, 3, 4, 5]);
  });

  it('answers BUSY when queued ciphertext would pass memoryCapBytes, and TOO_LARGE for an operation that never fits', async () => {
    const cap = MAX_FRAME_BYTES + 4; // the smallest cap: one full frame
    const h = await start({ maxInFlight: 1, partitions: { default: { gpuShare: 1, memoryCapBytes: cap, queueBound: 16 } } });
    h.context.hold = true;
    const egp = await h.session();
    const chunk = randomBytes(600_000);
    egp.send(egp.seal(1, { op: 'malloc', buffer: 1, size: 8 })); // in flight, held
    egp.send(egp.seal(2, { op: 'htod', buffer: 1, size: chunk.length }, chunk)); // queued: 600 kB
    const third = egp.seal(3, { op: 'htod', buffer: 2, size: chunk.length }, chunk);
    egp.send(third); // another 600 kB would pass the cap
    expect(await egp.expectError('BUSY')).toMatchObject({ n: 3 });
    h.context.hold = false;
    h.context.release();
    await egp.answer(1);
    await egp.answer(2);
    egp.send(third);
    await egp.answer(3);
    const huge = randomBytes(cap);
    egp.send(egp.seal(4, { op: 'htod', buffer: 3, size: huge.length }, huge));
    expect(await egp.expectError('TOO_LARGE')).toMatchObject({ n: 4 });
  });
});

describe('SGS bounds the ciphertext it holds, all sessions together', () => {
  it('answers BUSY when maxBufferedBytes is reached across sessions, and gives every byte back', async () => {
    const h = await start({ maxInFlight: 1, maxBufferedBytes: MAX_FRAME_BYTES + 4 });
    h.context.hold = true;
    const a = await h.session();
    const b = await h.session();
    const chunk = randomBytes(600_000);
    a.send(a.seal(1, { op: 'malloc', buffer: 1, size: 8 })); // in flight, held
    await until(() => h.context.heldCount === 1, 'A1 at the context');
    a.send(a.seal(2, { op: 'htod', buffer: 1, size: chunk.length }, chunk)); // queued: 600 kB of the budget
    await until(() => h.sgs.stats().queued === 1, 'A2 queued');
    const b1 = b.seal(1, { op: 'htod', buffer: 1, size: chunk.length }, chunk);
    b.send(b1);
    expect((await b.expectError('BUSY')).reason).toMatch(/all sessions together/);
    h.context.hold = false;
    h.context.release();
    await a.answer(1);
    await a.answer(2);
    b.send(b1);
    await b.answer(1);
    expect(h.sgs.stats().bufferedBytes).toBe(0);
  });
});

describe('SGS shares the context fairly', () => {
  it('serves two sessions in turn, one operation each, however many each queued', async () => {
    const h = await start({ maxInFlight: 1 });
    h.context.hold = true;
    const a = await h.session();
    const b = await h.session();
    a.send(a.seal(1, { op: 'malloc', buffer: 1, size: 8 }));
    await until(() => h.context.heldCount === 1, 'A1 at the context');
    for (const n of [2, 3, 4]) a.send(a.seal(n, { op: 'malloc', buffer: n, size: 8 }));
    for (const n of [1, 2, 3]) b.send(b.seal(n, { op: 'malloc', buffer: n, size: 8 }));
    await until(() => h.sgs.stats().queued === 6, 'six queued operations');
    h.context.hold = false;
    h.context.release();
    for (const n of [1, 2, 3, 4]) await a.answer(n);
    for (const n of [1, 2, 3]) await b.answer(n);
    const name = (session: string) => (session === a.session!.sessionId.toString('hex') ? 'A' : 'B');
    expect(h.context.received.map((op) => `${name(op.session)}${op.n}`)).toEqual(['A1', 'B1', 'A2', 'B2', 'A3', 'B3', 'A4']);
  });

  it('gives a partition at most its GPU share of the in-flight slots', async () => {
    const h = await start({ maxInFlight: 4, partitions: { default: { gpuShare: 0.5, memoryCapBytes: 64 * 1024 * 1024, queueBound: 16 } } });
    h.context.hold = true;
    const egp = await h.session();
    for (let n = 1; n <= 5; n++) egp.send(egp.seal(n, { op: 'malloc', buffer: n, size: 8 }));
    await until(() => h.sgs.stats().queued + h.sgs.stats().inFlight === 5, 'five operations at SGS');
    expect(h.sgs.stats()).toMatchObject({ inFlight: 2, queued: 3 });
  });
});

describe('SGS ends sessions that cannot proceed', () => {
  it('answers TIMEOUT when an operation misses its deadline, and closes the session', async () => {
    const h = await start({ deadlineMs: 200 });
    h.context.hold = true;
    const egp = await h.session();
    egp.send(egp.seal(1, { op: 'malloc', buffer: 1, size: 8 }));
    expect(await egp.expectError('TIMEOUT')).toMatchObject({ n: 1 });
    await until(() => h.sgs.stats().sessions === 0 && h.sgs.stats().inFlight === 0, 'the session and its slot to go');
  });

  it('answers TIMEOUT when a connection does not finish its set-up within handshakeTimeoutMs', async () => {
    const h = await start({ handshakeTimeoutMs: 200 });
    const idle = await FakeEgp.connect(h.workspace.enclaveSocket);
    expect((await idle.expectError('TIMEOUT')).reason).toMatch(/not set up within 200 ms/);
    const ready = await h.session(); // a session that does set up keeps no set-up timer
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect((await ready.call(1, { op: 'malloc', buffer: 1, size: 8 })).result).toEqual({ ok: true });
  });

  it('answers INTERNAL when the context crashes mid-operation', async () => {
    const h = await start();
    h.context.hold = true;
    const egp = await h.session();
    egp.send(egp.seal(1, { op: 'malloc', buffer: 1, size: 8 }));
    await until(() => h.context.heldCount === 1, 'the operation at the context');
    h.context.crash();
    expect(await egp.expectError('INTERNAL')).toMatchObject({ n: 1 });
    await until(() => h.sgs.stats().inFlight === 0, 'the slot to be freed');
  });

  it('answers INTERNAL when the context is not there', async () => {
    const h = await start();
    await h.context.close();
    const egp = await FakeEgp.connect(h.workspace.enclaveSocket);
    const outcome = await egp.open({ nsm, pcrs: [Buffer.alloc(48), Buffer.alloc(48), Buffer.alloc(48)] });
    expect(outcome).toMatchObject({ ready: false, error: { code: 'INTERNAL' } });
    egp.close();
  });

  it('refuses frames of another session or of the host direction with MALFORMED', async () => {
    const h = await start();
    const egp = await h.session();
    const other = await h.session();
    egp.send(other.seal(1, { op: 'malloc', buffer: 1, size: 8 }));
    expect((await egp.expectError('MALFORMED')).reason).toMatch(/another session/);
    other.send([other.session!.sealer(1, 1, NO_KERNEL).seal(0, Buffer.alloc(4), true)]);
    expect((await other.expectError('MALFORMED')).reason).toMatch(/direction 1/);
  });

  it('refuses a frame before the session is ready', async () => {
    const h = await start();
    const egp = await FakeEgp.connect(h.workspace.enclaveSocket);
    const ready = await h.session();
    egp.send(ready.seal(1, { op: 'malloc', buffer: 1, size: 8 }));
    expect((await egp.expectError('MALFORMED')).reason).toMatch(/before \{t: open\}/);
  });
});

describe('the kernel-attestation log', () => {
  it('gets one record per launch, in the catalogue\'s format, and none for other operations', async () => {
    const h = await start({ metrics: { enabled: false, instanceId: 'i-0123456789abcdef0', flushIntervalMs: 60_000, maxBufferedData: 10 } });
    const egp = await h.session();
    await egp.call(1, { op: 'htod', buffer: 1, size: 4 }, Buffer.from([1, 2, 3, 4]));
    await egp.call(2, launch(1), undefined, INCREMENT_DIGEST);
    await egp.call(3, launch(1), undefined, INCREMENT_DIGEST);
    await egp.call(4, { op: 'dtoh', buffer: 1 });
    await h.sgs.close();
    const lines = readFileSync(h.workspace.kernelLog, 'utf8').trim().split('\n');
    const records = lines.map((line) => JSON.parse(line) as KernelAttestationRecord);
    expect(records.map((r) => r.launch)).toEqual([2, 3]);
    for (const record of records) {
      expect(Object.keys(record)).toEqual(['time', 'instanceId', 'enclaveImage', 'session', 'launch', 'kernel', 'codeSha384', 'device']);
      expect(record).toMatchObject({
        instanceId: 'i-0123456789abcdef0',
        enclaveImage: IMAGE_DIMENSION,
        session: egp.session!.sessionId.toString('hex'),
        kernel: INCREMENT_KERNEL,
        codeSha384: INCREMENT_DIGEST.toString('hex'),
        device: 'gpu',
      });
      expect(new Date(record.time).toISOString()).toBe(record.time);
    }
  });
});
