/**
 * softmax (f32), row by row over a row-major rows x cols matrix:
 * out[r][j] = exp(input[r][j] - max_r) / sum_j exp(input[r][j] - max_r).
 *
 * Args: { input: buffer, out: buffer, rows: uint, cols: uint }. Both buffers hold at least
 * rows * cols f32 elements; out may be input.
 *
 * Numerics: subtracting the row's maximum keeps exp() from overflowing for any finite input;
 * exponentials and their sum are kept in float64 and rounded to f32 once, at the end. The
 * exponential is computed twice (for the sum, then for the output) rather than stored, so the
 * kernel needs no scratch memory whatever the row length. A row holding +Infinity or NaN, or
 * only -Infinity, gives NaN, as in ONNX Softmax.
 */
import { defineBuiltin } from './builtin-kernel';
import { MAX_F32_ELEMENTS, checkedProduct, f32View } from './kernel-args';

const SOURCE = `function softmax(input, out, rows, cols) {
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    let max = -Infinity;
    for (let j = 0; j < cols; j++) {
      const v = input[base + j];
      if (v > max || v !== v) max = v;
    }
    let sum = 0;
    for (let j = 0; j < cols; j++) sum += Math.exp(input[base + j] - max);
    for (let j = 0; j < cols; j++) out[base + j] = Math.exp(input[base + j] - max) / sum;
  }
}`;

export const SOFTMAX_KERNEL = defineBuiltin('softmax', SOURCE, (args, memory) => {
  const input = args.buffer('input');
  const out = args.buffer('out');
  const rows = args.uint('rows', MAX_F32_ELEMENTS);
  const cols = args.uint('cols', MAX_F32_ELEMENTS);
  const refuse = args.bad.bind(args);
  const count = checkedProduct([rows, cols], MAX_F32_ELEMENTS, refuse, 'rows x cols');
  return [f32View(memory, input, count, false, refuse, 'input'), f32View(memory, out, count, true, refuse, 'out'), rows, cols];
});
