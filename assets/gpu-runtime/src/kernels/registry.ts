/**
 * The kernels an execution context runs, by the name a launch gives: the built-ins and
 * onnx.run. Also the digest helpers the EGP uses to label its launches.
 */
import { createHash } from 'node:crypto';
import { BUILTIN_KERNELS } from './builtins';
import { Kernel } from './kernel';
import { createOnnxRunKernel } from './onnx-run';
import { OnnxSessionCache } from './onnx-session-cache';

export type KernelRegistry = ReadonlyMap<string, Kernel>;

export function createKernelRegistry(onnxSessions: OnnxSessionCache): KernelRegistry {
  const kernels: Kernel[] = [...Object.values(BUILTIN_KERNELS), createOnnxRunKernel(onnxSessions)];
  return new Map(kernels.map((kernel) => [kernel.name, kernel]));
}

/** The header digest of an onnx.run launch: SHA-384 of the model bytes. */
export function onnxModelDigest(model: Uint8Array): Buffer {
  return createHash('sha384').update(model).digest();
}

/** The header digest of every operation that runs no code (malloc, free, htod, dtoh): 48 zero bytes. */
export function noCodeDigest(): Buffer {
  return Buffer.alloc(48);
}

export function isNoCodeDigest(digest: Buffer): boolean {
  return digest.length === 48 && digest.every((byte) => byte === 0);
}
