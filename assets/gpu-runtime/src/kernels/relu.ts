/**
 * relu (f32): out[i] = max(input[i], 0) for i < count; NaN stays NaN, as in ONNX Relu.
 *
 * Args: { input: buffer, out: buffer, count: uint }. Both buffers hold at least `count` f32
 * elements; out may be input.
 */
import { defineBuiltin } from './builtin-kernel';
import { MAX_F32_ELEMENTS, f32View } from './kernel-args';

const SOURCE = `function relu(input, out, count) {
  for (let i = 0; i < count; i++) {
    const v = input[i];
    out[i] = v < 0 ? 0 : v;
  }
}`;

export const RELU_KERNEL = defineBuiltin('relu', SOURCE, (args, memory) => {
  const input = args.buffer('input');
  const out = args.buffer('out');
  const count = args.uint('count', MAX_F32_ELEMENTS);
  const refuse = args.bad.bind(args);
  return [f32View(memory, input, count, false, refuse, 'input'), f32View(memory, out, count, true, refuse, 'out'), count];
});
