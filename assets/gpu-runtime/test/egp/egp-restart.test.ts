/**
 * Exactly once across execution-context crashes. Each request adds a new vector into an
 * accumulator on the device (acc += x: not idempotent, so a launch run twice or lost shows in
 * every later read) and reads it back. The context is SIGKILLed in the middle of launches,
 * again and again, and restarted; the EGP must reconnect, replay its journal into the new
 * context and retry what was interrupted, so that every read-back is the exact prefix sum.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EgpClient } from '../../src/egp/client';
import { LocalStack, startLocalStack } from '../../src/egp/local-stack';
import { connect, f32Bytes, f32Values } from './helpers';

const WIDTH = 8;
const vector = (i: number) => Array.from({ length: WIDTH }, (_, k) => (i + 1) * (k + 1)); // small integers: exact in f32

describe('EGP across execution-context crashes', () => {
  let stack: LocalStack;
  let gpu: EgpClient;
  const sessions: Buffer[] = [];

  beforeAll(async () => {
    stack = await startLocalStack();
    gpu = await connect(stack, {
      observer: { session: (event) => sessions.push(event.sessionId) },
      limits: { reconnectDelayMs: 20, maxReconnectDelayMs: 200 },
    });
  });

  afterAll(async () => {
    gpu?.close();
    await stack?.stop();
  });

  it('completes every request exactly once while the context is killed mid-launch', async () => {
    const acc = await gpu.malloc(4 * WIDTH);
    const x = await gpu.malloc(4 * WIDTH);
    const expected = new Array<number>(WIDTH).fill(0);
    let kills = 0;
    // The sequential phase reuses one caller buffer, overwritten once each upload settled (as an
    // application would): a replay must use the client's copy, never the caller's memory.
    const scratch = new Float32Array(WIDTH);
    const request = (i: number, reuse = false) => {
      if (reuse) scratch.set(vector(i));
      const upload = gpu.memcpyHtoD(x, reuse ? new Uint8Array(scratch.buffer) : f32Bytes(vector(i)));
      const launch = gpu.launchKernel('add', { a: acc, b: x, out: acc, count: WIDTH });
      const read = gpu.memcpyDtoH(acc);
      return { upload, launch, read };
    };

    // One at a time, the context killed right after a launch was issued (before its answer).
    for (let i = 0; i < 24; i++) {
      const { upload, launch, read } = request(i, true);
      const killed = i % 4 === 1 ? stack.restartContext().then(() => kills++) : undefined;
      await Promise.all([upload, launch]);
      vector(i).forEach((v, k) => { expected[k] += v; });
      expect(f32Values(await read), `after request ${i}`).toEqual(expected);
      await killed;
    }

    // Pipelined: eight requests in flight when the context dies.
    for (let round = 0; round < 2; round++) {
      const base = 100 + 10 * round;
      const inFlight = Array.from({ length: 8 }, (_, j) => request(base + j));
      const killed = stack.restartContext().then(() => kills++);
      for (let j = 0; j < inFlight.length; j++) {
        vector(base + j).forEach((v, k) => { expected[k] += v; });
        expect(f32Values(await inFlight[j].read), `pipelined request ${base + j}`).toEqual(expected);
      }
      await killed;
    }

    expect(kills).toBe(8);
    // A new session at least per crash (more when a reconnect hit the context still starting).
    expect(sessions.length).toBeGreaterThanOrEqual(1 + kills);
    expect(new Set(sessions.map((id) => id.toString('hex'))).size).toBe(sessions.length);
  });

  it('completes every request exactly once while SGS is killed and restarted', async () => {
    const acc = await gpu.malloc(4 * WIDTH);
    const x = await gpu.malloc(4 * WIDTH);
    const expected = new Array<number>(WIDTH).fill(0);
    const before = sessions.length;
    for (let round = 0; round < 3; round++) {
      const reads: Array<{ read: Promise<Buffer>; expected: number[] }> = [];
      for (let j = 0; j < 6; j++) {
        const i = 200 + 10 * round + j;
        void gpu.memcpyHtoD(x, f32Bytes(vector(i)));
        void gpu.launchKernel('add', { a: acc, b: x, out: acc, count: WIDTH });
        vector(i).forEach((v, k) => { expected[k] += v; });
        reads.push({ read: gpu.memcpyDtoH(acc), expected: [...expected] });
      }
      const restarted = stack.restartSgs();
      for (const { read, expected: values } of reads) expect(f32Values(await read)).toEqual(values);
      await restarted;
    }
    await gpu.synchronize();
    expect(sessions.length).toBeGreaterThanOrEqual(before + 3);
  });
});
