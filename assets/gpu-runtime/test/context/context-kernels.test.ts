/**
 * The built-in f32 kernels against straightforward reference implementations (float64,
 * written the obvious way), their argument checks, and their digests.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { CborValue } from '../../../../lib/shared/cbor';
import { DeviceMemory } from '../../src/context/device-memory';
import { BUILTIN_KERNELS, BuiltinKernelName } from '../../src/kernels/builtins';
import { MAX_GEMM_MACS } from '../../src/kernels/gemm';
import { OperationError } from '../../src/kernels/operation-error';
import { CALLER, randomF32 } from './helpers';

function memoryWith(buffers: Record<number, Float32Array | number>, cap = 1 << 26): DeviceMemory {
  const memory = new DeviceMemory(cap);
  for (const [id, content] of Object.entries(buffers)) {
    const bytes = typeof content === 'number' ? content : content.byteLength;
    memory.allocate(Number(id), bytes);
    if (typeof content !== 'number') memory.write(Number(id)).set(new Uint8Array(content.buffer, content.byteOffset, content.byteLength));
  }
  return memory;
}

function f32(memory: DeviceMemory, id: number): Float32Array {
  const bytes = memory.read(id);
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
}

function args(entries: Record<string, CborValue>): Map<string, CborValue> {
  return new Map(Object.entries(entries));
}

async function launch(name: BuiltinKernelName, memory: DeviceMemory, entries: Record<string, CborValue>): Promise<number> {
  return BUILTIN_KERNELS[name].prepare(args(entries), memory, CALLER).run();
}

function refusedWith(action: () => unknown, code: string): string {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(OperationError);
    expect((error as OperationError).code).toBe(code);
    return (error as OperationError).reason;
  }
  throw new Error(`expected ${code}, nothing was thrown`);
}

describe('built-in kernel digests', () => {
  it.each(Object.keys(BUILTIN_KERNELS) as BuiltinKernelName[])('%s: the SHA-384 of exactly the source it compiles', (name) => {
    const kernel = BUILTIN_KERNELS[name];
    expect(kernel.name).toBe(name);
    expect(kernel.digest.equals(createHash('sha384').update(kernel.source).digest())).toBe(true);
    // The source is a plain function expression that Function.prototype.toString reproduces.
    expect(new Function(`return (${kernel.source});`)().toString()).toBe(kernel.source);
  });

  it('gives every kernel its own digest, and hands out copies', () => {
    const digests = Object.values(BUILTIN_KERNELS).map((k) => k.digest.toString('hex'));
    expect(new Set(digests).size).toBe(digests.length);
    BUILTIN_KERNELS.add.digest.fill(0);
    expect(BUILTIN_KERNELS.add.digest.toString('hex')).toBe(digests[0]);
  });
});

describe('add and relu', () => {
  it('add matches a + b in f32 and leaves elements past count alone', async () => {
    const a = randomF32(1000, 1e3);
    const b = randomF32(1000, 1e-3);
    const memory = memoryWith({ 1: a, 2: b, 3: 1004 * 4 });
    f32(memory, 3).fill(7);
    await launch('add', memory, { a: 1, b: 2, out: 3, count: 1000 });
    const out = f32(memory, 3);
    for (let i = 0; i < 1000; i++) expect(out[i]).toBe(Math.fround(a[i] + b[i]));
    expect([...out.subarray(1000)]).toEqual([7, 7, 7, 7]);
  });

  it('add works in place (out = a)', async () => {
    const memory = memoryWith({ 1: Float32Array.of(1, 2, 3), 2: Float32Array.of(10, 20, 30) });
    await launch('add', memory, { a: 1, b: 2, out: 1, count: 3 });
    expect([...f32(memory, 1)]).toEqual([11, 22, 33]);
  });

  it('relu clamps negatives, keeps positives and NaN', async () => {
    const input = Float32Array.of(-1, 0, 2.5, -0.0001, NaN, Infinity, -Infinity);
    const memory = memoryWith({ 1: input, 2: input.byteLength });
    await launch('relu', memory, { input: 1, out: 2, count: input.length });
    expect([...f32(memory, 2)]).toEqual([0, 0, 2.5, 0, NaN, Infinity, 0]);
  });

  it('count 0 is a no-op', async () => {
    const memory = memoryWith({ 1: 0, 2: 0 });
    await launch('relu', memory, { input: 1, out: 2, count: 0 });
  });
});

describe('softmax', () => {
  function reference(input: Float32Array, rows: number, cols: number): Float64Array {
    const out = new Float64Array(rows * cols);
    for (let r = 0; r < rows; r++) {
      const row = [...input.subarray(r * cols, (r + 1) * cols)];
      const max = Math.max(...row);
      const exps = row.map((v) => Math.exp(v - max));
      const sum = exps.reduce((s, e) => s + e, 0);
      exps.forEach((e, j) => { out[r * cols + j] = e / sum; });
    }
    return out;
  }

  it.each([[1, 1], [1, 10], [7, 3], [32, 1000]])('matches the reference for %i x %i, and each row sums to 1', async (rows, cols) => {
    const input = randomF32(rows * cols, 20);
    const memory = memoryWith({ 1: input, 2: input.byteLength });
    await launch('softmax', memory, { input: 1, out: 2, rows, cols });
    const out = f32(memory, 2);
    const expected = reference(input, rows, cols);
    for (let i = 0; i < out.length; i++) expect(out[i]).toBe(Math.fround(expected[i]));
    for (let r = 0; r < rows; r++) {
      expect(out.subarray(r * cols, (r + 1) * cols).reduce((s, v) => s + v, 0)).toBeCloseTo(1, 5);
    }
  });

  it('does not overflow on large inputs (the row maximum is subtracted)', async () => {
    const input = Float32Array.of(1000, 1001, 1002, -3e38, 3e38, 3e38);
    const memory = memoryWith({ 1: input, 2: input.byteLength });
    await launch('softmax', memory, { input: 1, out: 2, rows: 2, cols: 3 });
    const out = f32(memory, 2);
    expect(out.every(Number.isFinite)).toBe(true);
    expect(out[2]).toBeCloseTo(Math.exp(0) / (Math.exp(-2) + Math.exp(-1) + 1), 6);
    expect([...out.subarray(3)]).toEqual([0, 0.5, 0.5]);
  });

  it('gives NaN for a row holding NaN or +Infinity, and works in place', async () => {
    const input = Float32Array.of(1, NaN, 2, 0, Infinity, 1, 0, 0, 0);
    const memory = memoryWith({ 1: input });
    await launch('softmax', memory, { input: 1, out: 1, rows: 3, cols: 3 });
    const out = f32(memory, 1);
    expect(out.subarray(0, 6).every(Number.isNaN)).toBe(true);
    expect([...out.subarray(6)].map((v) => v.toFixed(6))).toEqual(['0.333333', '0.333333', '0.333333']);
  });
});

describe('gemm', () => {
  function reference(a: Float32Array, b: Float32Array, m: number, n: number, k: number): Float64Array {
    const c = new Float64Array(m * n);
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
      let sum = 0;
      for (let p = 0; p < k; p++) sum += a[i * k + p] * b[p * n + j];
      c[i * n + j] = sum;
    }
    return c;
  }

  // Shapes around the 256-column tile, degenerate ones, and a vector-matrix product.
  it.each([[1, 1, 1], [2, 3, 4], [1, 300, 7], [17, 255, 9], [5, 256, 33], [3, 257, 2], [64, 64, 64], [1, 513, 100], [100, 1, 100], [4, 5, 0]])(
    'm=%i n=%i k=%i matches the reference',
    async (m, n, k) => {
      const a = randomF32(m * k, 4);
      const b = randomF32(k * n, 4);
      const memory = memoryWith({ 1: a.byteLength === 0 ? 0 : a, 2: b.byteLength === 0 ? 0 : b, 3: m * n * 4 });
      f32(memory, 3).fill(NaN); // every element must be written
      await launch('gemm', memory, { a: 1, b: 2, c: 3, m, n, k });
      const c = f32(memory, 3);
      const expected = reference(a, b, m, n, k);
      // Same additions in the same order in float64, rounded once: identical bits.
      for (let i = 0; i < c.length; i++) expect(c[i]).toBe(Math.fround(expected[i]));
    },
  );

  it('refuses c aliasing a or b, and work beyond MAX_GEMM_MACS', () => {
    const memory = memoryWith({ 1: 64, 2: 64, 3: 64 });
    refusedWith(() => BUILTIN_KERNELS.gemm.prepare(args({ a: 1, b: 2, c: 1, m: 2, n: 2, k: 2 }), memory, CALLER), 'BAD_ARGS');
    refusedWith(() => BUILTIN_KERNELS.gemm.prepare(args({ a: 1, b: 2, c: 2, m: 2, n: 2, k: 2 }), memory, CALLER), 'BAD_ARGS');
    const side = Math.ceil(Math.cbrt(MAX_GEMM_MACS)) + 1;
    expect(refusedWith(() => BUILTIN_KERNELS.gemm.prepare(args({ a: 1, b: 2, c: 3, m: side, n: side, k: side }), memory, CALLER), 'BAD_ARGS')).toMatch(/work/);
  });
});

describe('argument checks', () => {
  const memory = memoryWith({ 1: 16, 2: 16, 3: 8 });
  const cases: [BuiltinKernelName, Record<string, CborValue>, string, RegExp][] = [
    ['add', { a: 1, b: 2, out: 3 }, 'BAD_ARGS', /'count' is missing/],
    ['add', { a: 1, b: 2, out: 3, count: 2, extra: 1 }, 'BAD_ARGS', /unexpected argument 'extra'/],
    ['add', { a: 1, b: 2, out: 3, count: -1 }, 'BAD_ARGS', /'count' must be an integer/],
    ['add', { a: 1, b: 2, out: 3, count: 1.5 as unknown as number }, 'BAD_ARGS', /'count'/],
    ['add', { a: 1, b: 2, out: 3, count: 'four' }, 'BAD_ARGS', /'count'/],
    ['add', { a: 1, b: 2, out: 3, count: 2 ** 40 }, 'BAD_ARGS', /'count'/],
    ['add', { a: 1, b: 2, out: 3, count: 3 }, 'BAD_ARGS', /out buffer 3 has 8 bytes, 3 f32 elements need 12/],
    ['add', { a: 0, b: 2, out: 3, count: 1 }, 'BAD_ARGS', /'a' must be a buffer id/],
    ['add', { a: 9, b: 2, out: 3, count: 1 }, 'NO_SUCH_BUFFER', /buffer 9/],
    ['add', { a: [1], b: 2, out: 3, count: 1 }, 'BAD_ARGS', /'a'/],
    ['relu', { input: 1, out: 2, count: 5 }, 'BAD_ARGS', /16 bytes, 5 f32 elements need 20/],
    ['softmax', { input: 1, out: 2, rows: 2 ** 20, cols: 2 ** 20 }, 'BAD_ARGS', /rows x cols .* exceeds/],
    ['softmax', { input: 1, out: 2, rows: 2, cols: 3 }, 'BAD_ARGS', /24/],
    ['gemm', { a: 1, b: 2, c: 3, m: 2 ** 29, n: 2 ** 29, k: 0 }, 'BAD_ARGS', /c, m x n/],
    ['gemm', { a: 1, b: 2, c: 3, m: 1, n: 2, k: 3 }, 'BAD_ARGS', /b buffer 2 has 16 bytes/],
  ];
  it.each(cases)('%s %j is refused %s', (name, entries, code, reason) => {
    expect(refusedWith(() => BUILTIN_KERNELS[name].prepare(args(entries), memory, CALLER), code)).toMatch(reason);
  });
});
