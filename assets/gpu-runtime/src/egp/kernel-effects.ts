/**
 * Which buffers a launch reads, writes and wholly replaces: what the replay journal's
 * compaction needs to know to drop launches whose results were overwritten. Taken from the
 * kernels' documented arguments (src/kernels/); a kernel not listed here is assumed to read
 * and partly write every buffer its arguments could name, which is always safe.
 *
 *   onnx.run  reads model and inputBuffers; replaces each of outputBuffers (resized to the output)
 *   add       reads a, b; writes out: count f32
 *   relu      reads input; writes out: count f32
 *   softmax   reads input; writes out: rows x cols f32
 *   gemm      reads a, b; writes c: m x n f32
 *
 * A built-in's write replaces the buffer when it covers the buffer's whole size, as far as the
 * client knows that size (an onnx.run output's size is the context's to choose).
 */
import type { CborValue } from '../../../../lib/shared/cbor';
import type { KernelArgs } from '../protocol/op-descriptor';
import { F32_BYTES } from '../kernels/kernel-args';
import { ONNX_RUN_KERNEL } from '../kernels/onnx-run';
import { referencedBuffers } from './kernel-args';

export interface LaunchEffects {
  readonly reads: number[];
  readonly writes: number[];
  readonly overwrites: number[];
  /** Buffers whose size the kernel may change (so the client no longer knows it). */
  readonly resizes: number[];
}

/** What the client knows of a buffer's size: undefined when a kernel may have resized it. */
export type SizeOf = (id: number) => number | undefined;

interface ElementwiseKernel {
  readonly inputs: readonly string[];
  readonly output: string;
  /** The arguments whose product is the element count written. */
  readonly count: readonly string[];
}

const BUILTIN_EFFECTS: Readonly<Record<string, ElementwiseKernel>> = {
  add: { inputs: ['a', 'b'], output: 'out', count: ['count'] },
  relu: { inputs: ['input'], output: 'out', count: ['count'] },
  softmax: { inputs: ['input'], output: 'out', count: ['rows', 'cols'] },
  gemm: { inputs: ['a', 'b'], output: 'c', count: ['m', 'n'] },
};

export function launchEffects(kernel: string, args: KernelArgs, buffers: { has(id: number): boolean }, sizeOf: SizeOf): LaunchEffects {
  const id = (value: CborValue): number[] => (typeof value === 'number' && buffers.has(value) ? [value] : []);
  const ids = (value: CborValue): number[] => (Array.isArray(value) ? value.flatMap(id) : []);
  if (kernel === ONNX_RUN_KERNEL) {
    const outputs = ids(args.get('outputBuffers'));
    return { reads: [...id(args.get('model')), ...ids(args.get('inputBuffers'))], writes: outputs, overwrites: outputs, resizes: outputs };
  }
  const builtin = Object.prototype.hasOwnProperty.call(BUILTIN_EFFECTS, kernel) ? BUILTIN_EFFECTS[kernel] : undefined;
  if (builtin) {
    const reads = builtin.inputs.flatMap((name) => id(args.get(name)));
    const writes = id(args.get(builtin.output));
    const elements = builtin.count.reduce((product, name) => {
      const value = args.get(name);
      return typeof value === 'number' ? product * value : Number.NaN;
    }, 1);
    const overwrites = writes.filter((out) => {
      const size = sizeOf(out);
      return size !== undefined && elements * F32_BYTES >= size;
    });
    return { reads, writes, overwrites, resizes: [] };
  }
  const all = referencedBuffers(args, buffers);
  return { reads: all, writes: all, overwrites: [], resizes: all };
}
