/**
 * Many sessions at once against one SGS and one execution context: 64 sessions of 200
 * operations each, all correct, no error anywhere, and SGS's and the context's resident
 * memory sampled throughout and held under a generous bound (no per-operation growth).
 */
import { describe, expect, it } from 'vitest';
import type { EgpClient } from '../../src/egp/client';
import { connect, f32Bytes, f32Values, useLocalStack } from './helpers';

const SESSIONS = 64;
const ROUNDS = 65; // 3 mallocs + 1 upload + 65 x (upload, launch, read back) + 1 free = 200 operations
const WIDTH = 256;
/** Far above what either process needs (about 100 MB each here), far below what a leak of every frame would reach. */
const RSS_BOUND_BYTES = 400 * 1024 * 1024;

describe('EGP under load', () => {
  const stack = useLocalStack();

  it(`serves ${SESSIONS} concurrent sessions x 200 operations with no error and bounded memory`, async () => {
    const samples: { sgs: number; context: number }[] = [];
    const sampler = setInterval(() => samples.push({ sgs: stack().rssBytes(stack().sgs) ?? 0, context: stack().rssBytes(stack().context) ?? 0 }), 100);
    const errors: unknown[] = [];
    const lost: string[] = [];
    let operations = 0;

    const session = async (s: number): Promise<void> => {
      let gpu: EgpClient | undefined;
      try {
        gpu = await connect(stack(), { observer: { operation: () => { operations++; }, lost: (error) => lost.push(error.code) } });
        const [a, b, out] = await Promise.all([gpu.malloc(4 * WIDTH), gpu.malloc(4 * WIDTH), gpu.malloc(4 * WIDTH)]);
        const ones = f32Bytes(new Array(WIDTH).fill(s));
        await gpu.memcpyHtoD(b, ones);
        for (let r = 0; r < ROUNDS; r++) {
          const values = Array.from({ length: WIDTH }, (_, k) => r * 1000 + k);
          void gpu.memcpyHtoD(a, f32Bytes(values));
          void gpu.launchKernel('add', { a, b, out, count: WIDTH });
          const sum = f32Values(await gpu.memcpyDtoH(out));
          expect(sum[0]).toBe(r * 1000 + s);
          expect(sum[WIDTH - 1]).toBe(r * 1000 + WIDTH - 1 + s);
        }
        await gpu.free(a);
        await gpu.synchronize();
      } catch (error) {
        errors.push(error);
      } finally {
        gpu?.close();
      }
    };

    await Promise.all(Array.from({ length: SESSIONS }, (_, s) => session(s)));
    clearInterval(sampler);
    expect(errors).toEqual([]);
    expect(lost).toEqual([]);
    expect(operations).toBe(SESSIONS * 200);
    expect(samples.length).toBeGreaterThan(0);
    const peak = { sgs: Math.max(...samples.map((s) => s.sgs)), context: Math.max(...samples.map((s) => s.context)) };
    expect(peak.sgs).toBeLessThan(RSS_BOUND_BYTES);
    expect(peak.context).toBeLessThan(RSS_BOUND_BYTES);
  });
});
