/**
 * The built-in f32 kernels, by name. A launch of one carries `BUILTIN_KERNELS[name].digest`
 * (the SHA-384 of its implementation's source, builtin-kernel.ts) in its frame headers; the
 * EGP reads the digests from here, so both ends agree by construction.
 */
import { ADD_KERNEL } from './add';
import { BuiltinKernel } from './builtin-kernel';
import { GEMM_KERNEL } from './gemm';
import { RELU_KERNEL } from './relu';
import { SOFTMAX_KERNEL } from './softmax';

export const BUILTIN_KERNELS: Readonly<Record<'add' | 'relu' | 'softmax' | 'gemm', BuiltinKernel>> = Object.freeze({
  add: ADD_KERNEL,
  relu: RELU_KERNEL,
  softmax: SOFTMAX_KERNEL,
  gemm: GEMM_KERNEL,
});

export type BuiltinKernelName = keyof typeof BUILTIN_KERNELS;
