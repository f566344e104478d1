/**
 * The replay journal stays bounded in the loops applications run, against real `egpu sgs` and
 * `egpu context` processes, and what it keeps still rebuilds the device memory when the
 * context is killed in the middle:
 *
 *   - uploads shorter than their buffer (a partial htod, then relu, then dtoh), of varying length;
 *   - an accumulator (`add {a, b, out: a}` over and over), which only a checkpoint shortens;
 *   - where no checkpoint fits maxJournalBytes, a clear TOO_LARGE at maxJournalEntries.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EgpClient, EgpLimits } from '../../src/egp/client';
import { LocalStack, startLocalStack } from '../../src/egp/local-stack';
import { connect, f32Bytes, f32Values, rejection } from './helpers';

describe('EGP replay journal, bounded across context restarts', () => {
  let stack: LocalStack;
  let gpu: EgpClient | undefined;
  const sessions: string[] = [];

  const open = async (limits: Partial<EgpLimits>) => {
    gpu = await connect(stack, {
      limits: { reconnectDelayMs: 20, maxReconnectDelayMs: 200, ...limits },
      observer: { session: (event) => sessions.push(event.sessionId.toString('hex')) },
    });
    return gpu;
  };

  beforeAll(async () => {
    stack = await startLocalStack();
  });

  afterAll(async () => {
    gpu?.close();
    await stack?.stop();
  });

  it('keeps one upload per length a loop of partial uploads still needs, and rebuilds its input after a restart', async () => {
    const ELEMENTS = 4096; // a 16 KiB input; uploads of 1 to 4 KiB into it
    const client = await open({ maxJournalBytes: 128 * 1024 });
    const first = sessions.length;
    const input = await client.malloc(4 * ELEMENTS);
    const out = await client.malloc(4 * ELEMENTS);
    const model = Float32Array.from({ length: ELEMENTS }, (_, k) => (k % 7) - 3); // what the device's input holds
    await client.memcpyHtoD(input, Buffer.from(model.buffer.slice(0)));
    let longest = 0;
    for (let i = 0; i < 400; i++) {
      const values = Array.from({ length: 256 * (1 + (i % 4)) }, (_, k) => ((i + k) % 11) - 5);
      model.set(values);
      const killed = i === 150 || i === 333 ? stack.restartContext() : undefined;
      const upload = client.memcpyHtoD(input, f32Bytes(values));
      const relu = client.launchKernel('relu', { input, out, count: ELEMENTS });
      const read = client.memcpyDtoH(out);
      await Promise.all([upload, relu]);
      expect(f32Values(await read), `iteration ${i}`).toEqual([...model].map((v) => Math.max(v, 0)));
      await killed;
      longest = Math.max(longest, client.journalLength);
    }
    // Without a read of input between uploads: two mallocs, the full upload, at most one upload
    // per length (4) and the last relu, between compactions of at most twice that.
    expect(longest).toBeLessThanOrEqual(16);
    expect(sessions.length - first).toBeGreaterThanOrEqual(2); // two restarts, each a new session with a replay
    client.close();
  });

  it('checkpoints an accumulator, so its journal stays bounded and every sum is exact across restarts', async () => {
    const client = await open({ maxJournalEntries: 64, journalCheckpointEntries: 16 });
    const first = sessions.length;
    const acc = await client.malloc(16);
    const b = await client.malloc(16);
    await client.memcpyHtoD(b, f32Bytes([1, 2, 3, 4]));
    const sum = (k: number) => [k, 2 * k, 3 * k, 4 * k];
    let k = 0;
    let longest = 0;
    // One at a time, the context killed now and then while a launch is on its way.
    for (; k < 300;) {
      const killed = k === 90 || k === 201 ? stack.restartContext() : undefined;
      await client.launchKernel('add', { a: acc, b, out: acc, count: 4 });
      k++;
      longest = Math.max(longest, client.journalLength);
      if (k % 20 === 0 || killed) expect(f32Values(await client.memcpyDtoH(acc)), `after ${k} launches`).toEqual(sum(k));
      await killed;
    }
    // Pipelined: 200 launches in flight (checkpoints among them) when the context dies.
    const launches = Array.from({ length: 200 }, () => client.launchKernel('add', { a: acc, b, out: acc, count: 4 }));
    const read = client.memcpyDtoH(acc);
    const killed = stack.restartContext();
    await Promise.all(launches);
    k += 200;
    expect(f32Values(await read)).toEqual(sum(k));
    await killed;
    expect(f32Values(await client.memcpyDtoH(acc))).toEqual(sum(k));
    longest = Math.max(longest, client.journalLength);
    expect(longest).toBeLessThanOrEqual(64 + 200);
    expect(client.journalLength).toBeLessThanOrEqual(64);
    expect(sessions.length - first).toBeGreaterThanOrEqual(3);
    client.close();
  });

  it('refuses calls TOO_LARGE at maxJournalEntries when no checkpoint fits maxJournalBytes, until buffers are freed', async () => {
    // b's 16 bytes fill maxJournalBytes: acc cannot be read back into the journal.
    const client = await open({ maxJournalBytes: 16, maxJournalEntries: 32, journalCheckpointEntries: 8 });
    const acc = await client.malloc(16);
    const b = await client.malloc(16);
    await client.memcpyHtoD(b, f32Bytes([1, 1, 1, 1]));
    let k = 0;
    let refused: (Error & { reason: string }) | undefined;
    for (; k < 100 && refused === undefined; k++) {
      try {
        await client.launchKernel('add', { a: acc, b, out: acc, count: 4 });
      } catch (error) {
        refused = error as Error & { reason: string };
      }
    }
    expect(refused).toMatchObject({ name: 'EgpError', code: 'TOO_LARGE' });
    expect(refused!.reason).toMatch(/maxJournalEntries/);
    expect(client.journalLength).toBeLessThanOrEqual(32);
    await rejection(() => client.malloc(4), 'TOO_LARGE');
    expect(f32Values(await client.memcpyDtoH(acc))).toEqual(new Array(4).fill(k - 1)); // the refused launch never ran
    await client.free(acc);
    const c = await client.malloc(16); // the chain went with acc
    await client.launchKernel('add', { a: b, b, out: c, count: 4 });
    expect(f32Values(await client.memcpyDtoH(c))).toEqual([2, 2, 2, 2]);
    client.close();
  });
});
