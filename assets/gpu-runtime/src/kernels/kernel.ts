/**
 * What a kernel is to the execution context: a name, and a way to turn a launch's arguments
 * into a checked, ready-to-run launch that knows the SHA-384 of the code it will run. The
 * context compares that digest with the one in the launch's frame headers (what SGS logged
 * as the code that runs) before running anything.
 */
import type { KernelArgs } from '../protocol/op-descriptor';

/** The session's device buffers, as kernels see them. Buffers are zero-offset, so any f32 view is aligned. */
export interface KernelMemory {
  /** Buffer `id` for reading; NO_SUCH_BUFFER if it is not allocated. */
  read(id: number): Buffer;
  /** Buffer `id` for writing in place (forgets its cached digest); NO_SUCH_BUFFER if it is not allocated. */
  write(id: number): Buffer;
  /** Replaces buffer `id` (which must exist) with `size` zero bytes, within the session's cap; returns it. */
  resize(id: number, size: number): Buffer;
  /** SHA-384 of buffer `id`'s bytes, computed once per write. */
  digest(id: number): Buffer;
}

/**
 * Where a kernel runs: 'gpu' for onnx.run with onnxruntime's CUDA provider, 'cpu' for the
 * built-ins (JavaScript) and for onnx.run with the CPU provider. SGS counts only GPU time as
 * GPU utilization, so a context that runs on the CPU on a GPU instance shows as an idle GPU.
 */
export type ComputeDevice = 'gpu' | 'cpu';

/** A launch whose arguments were checked against the session's buffers. */
export interface PreparedLaunch {
  /** SHA-384 of the code (builtins) or model (onnx.run) this launch runs. */
  readonly codeSha384: Buffer;
  /** Where it runs. */
  readonly device: ComputeDevice;
  /**
   * Runs the kernel and writes its outputs; resolves to the microseconds the kernel itself
   * took (not argument handling, model loading or output copies).
   */
  run(): Promise<number> | number;
}

/** Who launches: state a kernel keeps across sessions (onnx.run's loaded models) is kept apart per enclave image. */
export interface KernelCaller {
  /** The session's enclave image: its attested PCR0, PCR1 and PCR2 (imageOf()). */
  readonly image: string;
}

/** The image key of an attested enclave: its PCR0, PCR1 and PCR2 (hex), which measure its code. */
export function imageOf(pcrs: Readonly<Record<number, string>>): string {
  return [0, 1, 2].map((index) => pcrs[index] ?? '').join(':');
}

export interface Kernel {
  readonly name: string;
  /** Checks `args` (OperationError BAD_ARGS, NO_SUCH_BUFFER, ...) without running anything. */
  prepare(args: KernelArgs, memory: KernelMemory, caller: KernelCaller): PreparedLaunch;
}

/** Microseconds since `start` (a process.hrtime.bigint() reading), rounded to a whole number. */
export function elapsedUs(start: bigint): number {
  return Number((process.hrtime.bigint() - start + 500n) / 1000n);
}
