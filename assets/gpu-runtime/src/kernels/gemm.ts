/**
 * gemm (f32), row-major: c = a x b, with a of m x k, b of k x n and c of m x n.
 *
 * Args: { a: buffer, b: buffer, c: buffer, m: uint, n: uint, k: uint }. The buffers hold at
 * least m*k, k*n and m*n f32 elements; c must be a buffer of its own (it is written while a
 * and b are still read). k = 0 gives zeros.
 *
 * Each output element is accumulated in float64 over p = 0..k-1 in order and rounded to f32
 * once. The loop runs row by row of a over tiles of 256 columns of b, so the inner loop walks
 * b and the accumulator contiguously and the scratch is a fixed 2 KiB.
 *
 * Work is bounded: m * n * k at most MAX_GEMM_MACS, because the kernel runs on the context's
 * event loop and a launch should not stall the other sessions for long.
 */
import { defineBuiltin } from './builtin-kernel';
import { MAX_F32_ELEMENTS, checkedProduct, f32View } from './kernel-args';

/** 2^32 multiply-adds: a few seconds of one core. */
export const MAX_GEMM_MACS = 2 ** 32;

const SOURCE = `function gemm(a, b, c, m, n, k) {
  const TILE = 256;
  const acc = new Float64Array(TILE);
  for (let i = 0; i < m; i++) {
    const rowA = i * k;
    const rowC = i * n;
    for (let j0 = 0; j0 < n; j0 += TILE) {
      const width = Math.min(TILE, n - j0);
      acc.fill(0);
      for (let p = 0; p < k; p++) {
        const x = a[rowA + p];
        const rowB = p * n + j0;
        for (let j = 0; j < width; j++) acc[j] += x * b[rowB + j];
      }
      for (let j = 0; j < width; j++) c[rowC + j0 + j] = acc[j];
    }
  }
}`;

export const GEMM_KERNEL = defineBuiltin('gemm', SOURCE, (args, memory) => {
  const a = args.buffer('a');
  const b = args.buffer('b');
  const c = args.buffer('c');
  const m = args.uint('m', MAX_F32_ELEMENTS);
  const n = args.uint('n', MAX_F32_ELEMENTS);
  const k = args.uint('k', MAX_F32_ELEMENTS);
  const refuse = args.bad.bind(args);
  if (c === a || c === b) throw refuse(`c (buffer ${c}) must not be a or b`);
  checkedProduct([m, n, k], MAX_GEMM_MACS, refuse, 'the work m x n x k');
  return [
    f32View(memory, a, checkedProduct([m, k], MAX_F32_ELEMENTS, refuse, 'a, m x k'), false, refuse, 'a'),
    f32View(memory, b, checkedProduct([k, n], MAX_F32_ELEMENTS, refuse, 'b, k x n'), false, refuse, 'b'),
    f32View(memory, c, checkedProduct([m, n], MAX_F32_ELEMENTS, refuse, 'c, m x n'), true, refuse, 'c'),
    m, n, k,
  ];
});
