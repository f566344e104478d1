/**
 * What the context refuses, over a real Unix socket. Operations the enclave got wrong fail
 * cleanly ({ok: false, code}) and the session goes on; frames that do not open, replays,
 * protocol violations and failed attestation end the session with {t: error} and a close.
 * However a session ends, its key and buffers are zeroised.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import { encodeCbor } from '../../../../lib/shared/cbor';
import { ENCLAVE_TO_HOST } from '../../src/abe/frame-header';
import { answerHello } from '../../src/abe/handshake';
import { decodeContextHello, encodeEnclaveReply } from '../../src/abe/handshake-messages';
import { AbeSession } from '../../src/abe/session';
import { SimulatedNsm } from '../../src/attestation/simulated-nsm';
import { HANDSHAKE_DOCUMENT_MAX_AGE_MS } from '../../src/attestation/verify';
import { DeviceMemory } from '../../src/context/device-memory';
import { ExecutionContext } from '../../src/context/execution-context';
import { BUILTIN_KERNELS } from '../../src/kernels/builtins';
import { DESCRIPTOR_BUFFER, encodeRequest } from '../../src/protocol/op-descriptor';
import { TestClient, TestEnclave, contextForTests, f32Bytes, sha384, startContext } from './helpers';

const enclave = new TestEnclave();
const CAP = 1 << 20;

const shared = contextForTests(enclave, { memoryCap: CAP });

const { openSession } = shared;

const relu = (count: number, input = 1, out = 2) => ({ op: 'launch' as const, kernel: 'relu', args: new Map<string, number>([['input', input], ['out', out], ['count', count]]) });

describe('operations that fail cleanly: the session goes on', () => {
  it.each([
    ['a launch whose digest is another kernel\'s', relu(4), BUILTIN_KERNELS.add.digest, 'DIGEST_MISMATCH'],
    ['a launch with a random digest', relu(4), randomBytes(48), 'DIGEST_MISMATCH'],
    ['a malloc carrying a digest', { op: 'malloc' as const, buffer: 9, size: 4 }, BUILTIN_KERNELS.relu.digest, 'DIGEST_MISMATCH'],
    ['an unknown kernel', { op: 'launch' as const, kernel: 'conv3d', args: new Map() }, sha384('conv3d'), 'UNKNOWN_KERNEL'],
    ['bad args (count beyond the buffers)', relu(5), BUILTIN_KERNELS.relu.digest, 'BAD_ARGS'],
    ['bad args (an unexpected argument)', { ...relu(4), args: new Map<string, number>([['input', 1], ['out', 2], ['count', 4], ['alpha', 1]]) }, BUILTIN_KERNELS.relu.digest, 'BAD_ARGS'],
    ['a launch on a freed buffer', relu(4, 3), BUILTIN_KERNELS.relu.digest, 'NO_SUCH_BUFFER'],
    ['a malloc of an id in use', { op: 'malloc' as const, buffer: 1, size: 4 }, undefined, 'BUFFER_EXISTS'],
    ['a malloc over the memory cap', { op: 'malloc' as const, buffer: 5, size: CAP }, undefined, 'OUT_OF_MEMORY'],
  ])('%s', async (_what, request, digest, code) => {
    const client = await openSession();
    await client.call({ op: 'malloc', buffer: 1, size: 16 });
    await client.call({ op: 'malloc', buffer: 2, size: 16 });
    const answer = await client.call(request, { digest });
    expect(answer.result).toMatchObject({ ok: false, code });
    expect(answer.done.codeSha384.equals(Buffer.alloc(48))).toBe(true); // nothing ran
    expect((await client.call(relu(4), { digest: BUILTIN_KERNELS.relu.digest })).result).toEqual({ ok: true });
    client.close();
  });

  it('bounds the session\'s memory: allocations past the cap fail until memory is freed', async () => {
    const client = await openSession();
    const quarter = CAP / 4;
    for (let id = 1; id <= 4; id++) expect((await client.call({ op: 'malloc', buffer: id, size: quarter })).result.ok).toBe(true);
    expect((await client.call({ op: 'malloc', buffer: 5, size: 1 })).result).toMatchObject({ ok: false, code: 'OUT_OF_MEMORY' });
    await client.call({ op: 'free', buffer: 2 });
    expect((await client.call({ op: 'malloc', buffer: 5, size: quarter })).result.ok).toBe(true);
    client.close();
  });

  it('answers sealed requests that do not decode, or whose chunks do not fit them, with BAD_REQUEST', async () => {
    const client = await openSession();
    await client.call({ op: 'malloc', buffer: 1, size: 8 });
    const cases: [string, ReturnType<TestClient['frames']>][] = [
      ['random bytes', client.frames(randomBytes(40))],
      ['a CBOR list', client.frames(encodeCbor([1, 2, 3]))],
      ['an unknown op', client.frames(encodeCbor(new Map<string, string | number>([['op', 'memset'], ['buffer', 1]])))],
      ['htod of more than the buffer holds', client.frames({ op: 'htod', buffer: 1, size: 12 }, { data: Buffer.alloc(12) })],
      ['htod announcing 8 bytes, sending 4', client.frames({ op: 'htod', buffer: 1, size: 8 }, { data: Buffer.alloc(4) })],
      ['a malloc followed by a data chunk', client.frames({ op: 'malloc', buffer: 2, size: 4 }, { data: Buffer.alloc(4) })],
    ];
    // htod whose data goes to another buffer: sealed by hand.
    const n = client.n++;
    const sealer = client.session!.sealer(n, ENCLAVE_TO_HOST, Buffer.alloc(48));
    cases.push(['htod data for another buffer', { n, digest: Buffer.alloc(48), frames: [sealer.seal(DESCRIPTOR_BUFFER, encodeRequest({ op: 'htod', buffer: 1, size: 4 }), false), sealer.seal(2, Buffer.alloc(4), true)] }]);
    for (const [what, op] of cases) {
      for (const frame of op.frames) await client.connection.send(frame);
      const answer = await client.receive(op.n, op.digest);
      expect(answer.result, what).toMatchObject({ ok: false, code: 'BAD_REQUEST' });
    }
    expect((await client.call({ op: 'htod', buffer: 1, size: 8 }, { data: f32Bytes([1, 2]) })).result).toEqual({ ok: true });
    client.close();
  });
});

describe('what ends the session', () => {
  it('a replayed operation: REPLAY, naming it', async () => {
    const client = await openSession();
    const malloc = client.frames({ op: 'malloc', buffer: 1, size: 4 });
    for (const frame of malloc.frames) await client.connection.send(Buffer.from(frame));
    await client.receive(malloc.n, malloc.digest);
    await client.call({ op: 'malloc', buffer: 2, size: 4 });
    for (const frame of malloc.frames) await client.connection.send(frame);
    const refused = await client.refusal();
    expect(refused).toMatchObject({ code: 'REPLAY', n: malloc.n, closed: true });
    expect(refused.reason).toContain(String(malloc.n));
  });

  it.each([
    ['in the header', 12],
    ['in the ciphertext', -20],
    ['in the tag', -1],
  ])('a frame with one bit flipped %s: refused, and the session closes', async (_where, offset) => {
    const client = await openSession();
    const op = client.frames({ op: 'malloc', buffer: 1, size: 4 });
    const frame = Buffer.from(op.frames[0]);
    frame[offset < 0 ? frame.length + offset : offset] ^= 0x04;
    await client.connection.send(frame);
    const refusal = await client.refusal();
    expect(refusal.closed).toBe(true);
    expect(['MALFORMED', 'REPLAY']).toContain(refusal.code);
  });

  it('a frame of another session: MALFORMED', async () => {
    const client = await openSession();
    const other = new AbeSession(randomBytes(16), randomBytes(32));
    await client.connection.send(other.sealer(1, ENCLAVE_TO_HOST, Buffer.alloc(48)).seal(0, encodeRequest({ op: 'free', buffer: 1 }), true));
    expect(await client.refusal()).toMatchObject({ code: 'MALFORMED', closed: true });
  });

  it('a frame before the handshake, a second hello-request, an unexpected message type: MALFORMED', async () => {
    const early = await TestClient.connect(shared.context.address);
    await early.connection.send(new AbeSession(randomBytes(16), randomBytes(32)).sealer(1, 0, Buffer.alloc(48)).seal(0, Buffer.alloc(4), true));
    expect(await early.refusal()).toMatchObject({ code: 'MALFORMED', closed: true });

    const twice = await openSession();
    await twice.connection.sendControl({ t: 'hello-request' });
    expect(await twice.refusal()).toMatchObject({ code: 'MALFORMED', closed: true });

    const odd = await TestClient.connect(shared.context.address);
    await odd.connection.sendControl({ t: 'open' });
    expect(await odd.refusal()).toMatchObject({ code: 'MALFORMED', closed: true });
  });

  it('SGS reporting an error: the session ends without an answer', async () => {
    const client = await openSession();
    await client.connection.sendControl({ t: 'error', code: 'TIMEOUT', reason: 'the enclave went away' });
    expect(await client.refusal()).toEqual({ code: undefined, n: undefined, closed: true });
  });

  it('zeroises the session key and every buffer however the session ends', async () => {
    const closeKey = vi.spyOn(AbeSession.prototype, 'close');
    const clearMemory = vi.spyOn(DeviceMemory.prototype, 'clear');
    try {
      const client = await openSession();
      await client.call({ op: 'malloc', buffer: 1, size: 8 });
      const frame = Buffer.from(client.frames({ op: 'free', buffer: 1 }).frames[0]);
      frame[frame.length - 1] ^= 1;
      await client.connection.send(frame);
      await client.refusal();
      await vi.waitFor(() => expect(clearMemory).toHaveBeenCalled());
      expect(closeKey).toHaveBeenCalled();
    } finally {
      closeKey.mockRestore();
      clearMemory.mockRestore();
    }
    const memory = new DeviceMemory(64);
    memory.allocate(1, 16);
    const held = memory.write(1);
    held.fill(0xaa);
    memory.clear();
    expect(held.every((b) => b === 0)).toBe(true);
    expect(() => memory.read(1)).toThrow(/session has ended/);
  });
});

describe('attestation', () => {
  async function handshakeRefusal(ctx: ExecutionContext, identity = enclave.identity(), tamper?: (hello: ReturnType<typeof decodeContextHello>) => void) {
    const client = await TestClient.connect(ctx.address);
    await client.connection.sendControl({ t: 'hello-request' });
    const hello = await client.nextControl();
    if (hello.t !== 'hello') throw new Error('no hello');
    const decoded = decodeContextHello(hello.hello);
    tamper?.(decoded);
    const { reply } = await answerHello(decoded, identity);
    await client.connection.sendControl({ t: 'reply', reply: encodeEnclaveReply(reply) });
    return client.refusal();
  }

  it('refuses an enclave whose document chains to another root: UNAUTHORIZED', async () => {
    const stranger = new TestEnclave(SimulatedNsm.create());
    expect(await handshakeRefusal(shared.context, stranger.identity())).toMatchObject({ code: 'UNAUTHORIZED', closed: true });
  });

  it('refuses an enclave whose PCRs are not the expected ones: UNAUTHORIZED', async () => {
    const otherImage = new TestEnclave(enclave.nsm, 'other-image');
    expect(await handshakeRefusal(shared.context, otherImage.identity())).toMatchObject({ code: 'UNAUTHORIZED', closed: true });
  });

  it('refuses a document made for another nonce: UNAUTHORIZED', async () => {
    expect(await handshakeRefusal(shared.context, enclave.identity(), (hello) => { (hello as { nonce: Buffer }).nonce = randomBytes(32); })).toMatchObject({ code: 'UNAUTHORIZED', closed: true });
  });

  it('refuses the AWS root for simulated documents, and accepts any image only when that is asked for', async () => {
    const aws = await startContext(enclave, { root: 'aws' });
    try {
      expect(await handshakeRefusal(aws.context)).toMatchObject({ code: 'UNAUTHORIZED', closed: true });
    } finally {
      await aws.stop();
    }
    const open = await startContext(enclave, { expectedPcrs: undefined, allowAnyImage: true });
    try {
      const client = await TestClient.connect(open.context.address);
      await client.handshake(new TestEnclave(enclave.nsm, 'any-image').identity());
      expect((await client.call({ op: 'malloc', buffer: 1, size: 1 })).result.ok).toBe(true);
      client.close();
    } finally {
      await open.stop();
    }
  });

  const pcr = (index: number) => enclave.expectedPcrs[index as 0 | 1 | 2];
  it.each([
    [undefined, /the expected PCRs \(none\) do not name the enclave's code, so any image would be served: expect PCR0, PCR8, or PCR1 and PCR2.*allowAnyImage: true/],
    [{ 1: 'b1'.repeat(48) }, /the expected PCRs \(PCR1\) do not name the enclave's code/],
    [{ 3: 'e3'.repeat(48), 4: 'e4'.repeat(48) }, /the expected PCRs \(PCR3, PCR4\) do not name the enclave's code/],
  ])('will not start with expected PCRs %j, which would serve any image', async (expectedPcrs, message) => {
    await expect(startContext(enclave, { expectedPcrs })).rejects.toThrow(message);
  });

  it('will not expect a debug-mode (all-zero) PCR unless allowDebugMode, and accepts PCR1 and PCR2 without PCR0', async () => {
    await expect(startContext(enclave, { expectedPcrs: { 0: '00'.repeat(48), 1: pcr(1) } }))
      .rejects.toThrow(/the expected PCR0 is all zeros, the measurement of an enclave in debug mode.*allowDebugMode: true/);
    const debug = await startContext(enclave, { expectedPcrs: { 0: '00'.repeat(48) }, allowDebugMode: true });
    await debug.stop();
    const byParts = await startContext(enclave, { expectedPcrs: { 1: pcr(1), 2: pcr(2) } });
    try {
      const client = await TestClient.connect(byParts.context.address);
      await client.handshake(enclave.identity());
      expect((await client.call({ op: 'malloc', buffer: 1, size: 1 })).result.ok).toBe(true);
      client.close();
    } finally {
      await byParts.stop();
    }
  });

  it('refuses a document made more than five minutes before it checks it: UNAUTHORIZED (STALE)', async () => {
    const late = await startContext(enclave, { clock: () => new Date(Date.now() + HANDSHAKE_DOCUMENT_MAX_AGE_MS + 60_000) });
    try {
      const refused = await handshakeRefusal(late.context);
      expect(refused).toMatchObject({ code: 'UNAUTHORIZED', closed: true });
      expect(refused.reason).toMatch(/STALE/);
    } finally {
      await late.stop();
    }
  });

  it('refuses a reply for another session: MALFORMED', async () => {
    expect(await handshakeRefusal(shared.context, enclave.identity(), (hello) => { (hello as { sessionId: Buffer }).sessionId = randomBytes(16); })).toMatchObject({ code: 'MALFORMED', closed: true });
  });
});

describe('limits on connections', () => {
  it('ends a handshake that does not complete in time: TIMEOUT', async () => {
    const slow = await startContext(enclave, { handshakeTimeoutMs: 20 });
    try {
      const client = await TestClient.connect(slow.context.address);
      await client.connection.sendControl({ t: 'hello-request' });
      expect(await client.refusal()).toMatchObject({ code: 'TIMEOUT', closed: true });
    } finally {
      await slow.stop();
    }
  });

  it('refuses sessions beyond maxSessions with BUSY and a retry time, and admits again once one ends', async () => {
    const small = await startContext(enclave, { maxSessions: 2 });
    try {
      const first = await TestClient.connect(small.context.address);
      await first.handshake(enclave.identity());
      const second = await TestClient.connect(small.context.address);
      await second.handshake(enclave.identity());
      const third = await TestClient.connect(small.context.address);
      const busy = await third.nextControl();
      expect(busy).toMatchObject({ t: 'error', code: 'BUSY', retryAfterMs: 1000 });
      first.close();
      await vi.waitFor(() => expect(small.context.sessionCount).toBe(1));
      const fourth = await TestClient.connect(small.context.address);
      await fourth.handshake(enclave.identity());
      second.close();
      fourth.close();
    } finally {
      await small.stop();
    }
  });

  it('closes quietly when the peer ends mid-operation', async () => {
    const client = await openSession();
    await client.call({ op: 'malloc', buffer: 1, size: 4 * 1024 * 1024 });
    const op = client.frames({ op: 'htod', buffer: 1, size: 4 * 1024 * 1024 }, { data: Buffer.alloc(4 * 1024 * 1024) });
    await client.connection.send(op.frames[0]);
    await client.connection.send(op.frames[1]);
    const before = shared.context.sessionCount;
    client.close();
    await vi.waitFor(() => expect(shared.context.sessionCount).toBe(before - 1));
  });
});
