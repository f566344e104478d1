import { describe, expect, it } from 'vitest';
import { BufferPool } from '../src/buffer-pool';
import { LARGE_FRAME_BYTES, allocateFrame, releaseFrame } from '../src/abe/frame-pool';

const KiB = 1024;

describe('BufferPool', () => {
  it('reuses released memory for a request of the same size, and only then', () => {
    const pool = new BufferPool({ maxBytes: 1024 * KiB });
    const first = pool.acquire(100 * KiB);
    expect(first.length).toBe(100 * KiB);
    first.fill(7);
    pool.release(first);
    expect(pool.bytes).toBe(100 * KiB);
    const other = pool.acquire(101 * KiB); // exact sizes by default: not the same memory
    expect(other.buffer).not.toBe(first.buffer);
    const again = pool.acquire(100 * KiB);
    expect(again.buffer).toBe(first.buffer);
    expect(again[0]).toBe(7); // old contents: callers overwrite them
    expect(pool.bytes).toBe(0);
  });

  it('serves sizes of one capacity class from the same memory, at the size asked', () => {
    const pool = new BufferPool({ maxBytes: 1024 * KiB, classBytes: 64 * KiB });
    const frame = pool.acquire(65 * KiB);
    expect(frame.buffer.byteLength).toBe(128 * KiB);
    pool.release(frame);
    const next = pool.acquire(127 * KiB);
    expect(next.buffer).toBe(frame.buffer);
    expect(next.length).toBe(127 * KiB);
  });

  it('ignores what it did not hand out, views, and second releases', () => {
    const pool = new BufferPool({ maxBytes: 1024 * KiB });
    pool.release(Buffer.allocUnsafeSlow(100 * KiB));
    const buffer = pool.acquire(100 * KiB);
    pool.release(buffer.subarray(1));
    expect(pool.bytes).toBe(0);
    pool.release(buffer);
    pool.release(buffer); // a second holder giving it back must not put it in the pool twice
    expect(pool.bytes).toBe(100 * KiB);
    const a = pool.acquire(100 * KiB);
    const b = pool.acquire(100 * KiB);
    expect(a.buffer).not.toBe(b.buffer);
  });

  it('leaves small requests to Node and keeps at most maxBytes free, evicting the oldest sizes', () => {
    const pool = new BufferPool({ maxBytes: 250 * KiB });
    const small = pool.acquire(10 * KiB);
    pool.release(small);
    expect(pool.bytes).toBe(0);
    const [a, b, c] = [pool.acquire(100 * KiB), pool.acquire(100 * KiB), pool.acquire(120 * KiB)];
    pool.release(a);
    pool.release(b);
    expect(pool.bytes).toBe(200 * KiB);
    pool.release(c); // 320 KiB would pass 250: one 100 KiB buffer goes
    expect(pool.bytes).toBe(220 * KiB);
    expect(pool.acquire(120 * KiB).buffer).toBe(c.buffer);
    const huge = pool.acquire(300 * KiB);
    pool.release(huge); // larger than the whole pool: left to the collector
    expect(pool.bytes).toBe(100 * KiB);
  });

  it.each([{ maxBytes: -1 }, { maxBytes: 1, minBytes: 0 }, { maxBytes: 1, classBytes: 0.5 }])('refuses options %j', (options) => {
    expect(() => new BufferPool(options)).toThrow(RangeError);
  });
});

describe('the frame pool', () => {
  it('assembles large frames in reused memory and small ones in ordinary memory', () => {
    const frame = allocateFrame(LARGE_FRAME_BYTES + 5);
    releaseFrame(frame);
    expect(allocateFrame(LARGE_FRAME_BYTES + 9).buffer).toBe(frame.buffer);
    const small = allocateFrame(100);
    expect(small.buffer.byteLength).toBeGreaterThan(100); // a slice of Node's shared allocation pool
    releaseFrame(small); // ignored
  });
});
