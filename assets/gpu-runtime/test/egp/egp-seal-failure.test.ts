/**
 * Sealing an operation can fail in the enclave: no memory for its frames (the pool's
 * allocation throws), or a failure once its memory is taken (operation n may be spent and
 * frames written). The first fails that call alone and the session goes on; the second ends
 * the session, and the calls it interrupted go again in the next one in their own order,
 * after the journal's replay. Faults are injected into the client's buffer pool; SGS and the
 * context are real processes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EgpClient } from '../../src/egp/client';
import { LocalStack, startLocalStack } from '../../src/egp/local-stack';
import { connect, f32Bytes, f32Values, rejection } from './helpers';

type Fault = 'throw' | 'too-small';

describe('EGP when sealing an operation fails', () => {
  let stack: LocalStack;
  let gpu: EgpClient;
  const lost: string[] = [];
  const sessions: Array<{ reconnect: boolean; replayed: number }> = [];
  /** Faults for the pool's next acquire() calls, in order (undefined: a normal one). */
  let faults: Array<Fault | undefined> = [];
  /** A fault for the first acquire() of the next session (its first replayed operation's frames). */
  let nextSessionFault: Fault | undefined;

  beforeAll(async () => {
    stack = await startLocalStack();
    gpu = await connect(stack, {
      observer: { lost: (error) => lost.push(error.code), session: (event) => {
        sessions.push({ reconnect: event.reconnect, replayed: event.replayed });
        if (nextSessionFault) faults = [nextSessionFault];
        nextSessionFault = undefined;
      } },
      limits: { reconnectDelayMs: 20, maxReconnectDelayMs: 200 },
    });
    const pool = (gpu as unknown as { pool: { acquire(size: number): Buffer } }).pool;
    const acquire = pool.acquire.bind(pool);
    pool.acquire = (size: number) => {
      const fault = faults.shift();
      if (fault === 'throw') throw new RangeError('Array buffer allocation failed');
      if (fault === 'too-small') return Buffer.alloc(8); // no frame fits: sealing fails once its memory is taken
      return acquire(size);
    };
  });

  afterAll(async () => {
    gpu?.close();
    await stack?.stop();
  });

  it('fails a call alone when its frames cannot be allocated, and runs the others in order in the same session', async () => {
    const [x, y] = [await gpu.malloc(16), await gpu.malloc(16)];
    const before = { lost: lost.length, sessions: sessions.length, id: gpu.sessionId!.toString('hex') };
    faults = [undefined, 'throw']; // the htod's frames, then the relu's
    const upload = gpu.memcpyHtoD(x, f32Bytes([1, -2, 3, -4]));
    const relu = rejection(() => gpu.launchKernel('relu', { input: x, out: y, count: 4 }), 'TOO_LARGE');
    const readY = gpu.memcpyDtoH(y);
    const readX = gpu.memcpyDtoH(x);
    await upload;
    const refused = await relu;
    expect(refused.reason).toMatch(/launch relu.*allocat/);
    expect(f32Values(await readY)).toEqual([0, 0, 0, 0]); // the relu never ran
    expect(f32Values(await readX)).toEqual([1, -2, 3, -4]);
    expect(lost.length).toBe(before.lost);
    expect(sessions.length).toBe(before.sessions);
    expect(gpu.sessionId!.toString('hex')).toBe(before.id);
    await gpu.launchKernel('relu', { input: x, out: y, count: 4 });
    expect(f32Values(await gpu.memcpyDtoH(y))).toEqual([1, 0, 3, 0]);
  });

  it('ends the session when sealing fails past the allocation, and sends the interrupted calls again in order', async () => {
    const [x, y] = [await gpu.malloc(16), await gpu.malloc(16)];
    const before = { lost: lost.length, sessions: sessions.length };
    faults = [undefined, 'too-small']; // the htod's frames, then the relu's
    const upload = gpu.memcpyHtoD(x, f32Bytes([5, -6, 7, -8]));
    const relu = gpu.launchKernel('relu', { input: x, out: y, count: 4 });
    const readY = gpu.memcpyDtoH(y);
    await Promise.all([upload, relu]);
    expect(f32Values(await readY)).toEqual([5, 0, 7, 0]); // relu after the htod it reads
    expect(f32Values(await gpu.memcpyDtoH(x))).toEqual([5, -6, 7, -8]);
    expect(lost.length).toBe(before.lost + 1);
    expect(sessions.length).toBe(before.sessions + 1);
  });

  it('regenerates a replayed operation whose sealing failed from the journal, not ahead of it', async () => {
    const x = await gpu.malloc(16);
    await gpu.memcpyHtoD(x, f32Bytes([9, 10, 11, 12]));
    const before = { lost: lost.length, sessions: sessions.length };
    // The next session's first replayed operation fails sealing past its allocation: that session ends too.
    nextSessionFault = 'too-small';
    await stack.restartContext();
    expect(f32Values(await gpu.memcpyDtoH(x))).toEqual([9, 10, 11, 12]);
    expect(nextSessionFault).toBeUndefined();
    expect(sessions.slice(before.sessions).every((s) => s.reconnect && s.replayed > 0)).toBe(true);
    expect(sessions.length).toBeGreaterThanOrEqual(before.sessions + 2);
    expect(lost.length).toBeGreaterThanOrEqual(before.lost + 2);
  });
});
