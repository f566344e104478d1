/**
 * The digest a launch carries in its frame headers: the SHA-384 of the code or model the
 * context will run, which SGS logs as what ran and the context checks before running it.
 *
 *   built-in kernels   the digest the context computes from the kernel's implementation
 *                      (passed in: BUILTIN_KERNELS, or whatever the application pins)
 *   onnx.run           SHA-384 of the model bytes this client uploaded into the model buffer
 *   anything else      the digest the caller gives
 */
import { createHash } from 'node:crypto';
import type { CborValue } from '../../../../lib/shared/cbor';
import { DIGEST_BYTES } from '../abe/frame-header';
import { ONNX_RUN_KERNEL } from '../kernels/onnx-run';
import { EgpError } from './errors';
import type { UploadCopy } from './upload-copy';

/** The onnx.run argument that names the buffer holding the model. */
export const ONNX_MODEL_ARGUMENT = 'model';

/** What the client knows of a device buffer. */
export interface BufferRecord {
  /** Its size as far as the client knows: undefined once a kernel may have resized it. */
  size: number | undefined;
  /** Its last htod's data, for onnx.run's model digest. */
  upload?: UploadCopy;
  /** SHA-384 of that data, computed on first use: hashing every upload would cost more than sealing it. */
  digest?: Buffer;
}

export function launchDigest(
  kernel: string,
  args: ReadonlyMap<string, CborValue>,
  builtins: ReadonlyMap<string, Buffer>,
  buffers: ReadonlyMap<number, BufferRecord>,
  explicit?: Uint8Array,
): Buffer {
  if (explicit !== undefined) {
    if (explicit.length !== DIGEST_BYTES) throw new EgpError('INVALID_ARGUMENT', `a kernel digest is ${DIGEST_BYTES} bytes (SHA-384), got ${explicit.length}`);
    return Buffer.from(explicit);
  }
  if (kernel === ONNX_RUN_KERNEL) {
    const id = args.get(ONNX_MODEL_ARGUMENT);
    const record = typeof id === 'number' ? buffers.get(id) : undefined;
    if (record?.upload === undefined) {
      throw new EgpError('INVALID_ARGUMENT', `${ONNX_RUN_KERNEL}: argument '${ONNX_MODEL_ARGUMENT}' must name a buffer this client uploaded a model into`);
    }
    record.digest ??= createHash('sha384').update(record.upload.bytes).digest();
    return record.digest;
  }
  const builtin = builtins.get(kernel);
  if (builtin === undefined) {
    throw new EgpError('INVALID_ARGUMENT', `no digest known for kernel '${kernel.slice(0, 64)}': pass { digest } (SHA-384 of its code)`);
  }
  return builtin;
}
