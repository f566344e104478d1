/**
 * add (f32): out[i] = a[i] + b[i] for i < count.
 *
 * Args: { a: buffer, b: buffer, out: buffer, count: uint }. Each buffer holds at least
 * `count` f32 elements (little-endian); out may be a or b (the sum is element-wise).
 */
import { defineBuiltin } from './builtin-kernel';
import { MAX_F32_ELEMENTS, f32View } from './kernel-args';

const SOURCE = `function add(a, b, out, count) {
  for (let i = 0; i < count; i++) out[i] = a[i] + b[i];
}`;

export const ADD_KERNEL = defineBuiltin('add', SOURCE, (args, memory) => {
  const a = args.buffer('a');
  const b = args.buffer('b');
  const out = args.buffer('out');
  const count = args.uint('count', MAX_F32_ELEMENTS);
  const refuse = args.bad.bind(args);
  return [
    f32View(memory, a, count, false, refuse, 'a'),
    f32View(memory, b, count, false, refuse, 'b'),
    f32View(memory, out, count, true, refuse, 'out'),
    count,
  ];
});
