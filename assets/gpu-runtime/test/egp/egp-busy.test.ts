/**
 * Backpressure: with SGS's per-session queue bound at 2 and one operation at the context at
 * a time, a deep pipeline is answered BUSY again and again. The EGP resends the same sealed
 * frames after retryAfterMs, in order, holding new ones back meanwhile, so every operation
 * runs once and in order (an accumulator shows any loss, repeat or reordering).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EgpClient } from '../../src/egp/client';
import { LocalStack, startLocalStack } from '../../src/egp/local-stack';
import { connect, f32Bytes, f32Values } from './helpers';

const WIDTH = 64;

describe('EGP under SGS backpressure (BUSY)', () => {
  let stack: LocalStack;
  let gpu: EgpClient;
  const busy: number[] = [];
  const lost: string[] = [];

  beforeAll(async () => {
    stack = await startLocalStack({
      sgsConfig: { maxInFlight: 1, partitions: { default: { gpuShare: 1, memoryCapBytes: 64 * 1024 * 1024, queueBound: 2 } } },
    });
    gpu = await connect(stack, { observer: { busy: (event) => busy.push(event.n), lost: (error) => lost.push(error.code) } });
  });

  afterAll(async () => {
    gpu?.close();
    await stack?.stop();
  });

  it('resends refused operations until all ran, once each and in order', async () => {
    const acc = await gpu.malloc(4 * WIDTH);
    const xs = await Promise.all(Array.from({ length: 4 }, () => gpu.malloc(4 * WIDTH)));
    const expected = new Array<number>(WIDTH).fill(0);
    const reads: Array<{ read: Promise<Buffer>; expected: number[] }> = [];
    for (let i = 0; i < 60; i++) {
      const x = xs[i % xs.length];
      void gpu.memcpyHtoD(x, f32Bytes(Array.from({ length: WIDTH }, (_, k) => i + k)));
      void gpu.launchKernel('add', { a: acc, b: x, out: acc, count: WIDTH });
      for (let k = 0; k < WIDTH; k++) expected[k] += i + k;
      if (i % 10 === 9) reads.push({ read: gpu.memcpyDtoH(acc), expected: [...expected] });
    }
    await gpu.synchronize();
    for (const { read, expected: values } of reads) expect(f32Values(await read)).toEqual(values);
    expect(busy.length).toBeGreaterThan(0);
    expect(lost).toEqual([]); // BUSY never ends the session
  });
});
