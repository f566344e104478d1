import { RuntimeError, fitReason } from '../errors';

/**
 * Why an operation failed cleanly: the enclave asked for something the context refuses, the
 * session goes on, and the enclave reads the code and reason from the sealed result
 * `{ok: false, code, reason}` (never seen by SGS). Failures that end the session (frames
 * that do not open, replays, protocol violations) are WireErrors instead.
 */
export type OperationFailureCode =
  /** The request descriptor did not decode, or its chunks did not fit it (wrong buffer, too many or too few bytes). */
  | 'BAD_REQUEST'
  /** A launch names no kernel this context has. */
  | 'UNKNOWN_KERNEL'
  /** Kernel arguments missing, unexpected, of the wrong type, out of range, or not fitting their buffers. */
  | 'BAD_ARGS'
  /** A buffer id that is not allocated in this session. */
  | 'NO_SUCH_BUFFER'
  /** malloc of a buffer id already allocated. */
  | 'BUFFER_EXISTS'
  /** The session's memory cap or buffer count (or the host's memory) refuses the allocation. */
  | 'OUT_OF_MEMORY'
  /** The frame header's digest is not the SHA-384 of the code the operation would run (48 zero bytes for non-launches). */
  | 'DIGEST_MISMATCH'
  /** The kernel itself failed: onnxruntime refused the model, its inputs or its outputs. */
  | 'KERNEL_FAILED';

export const OPERATION_FAILURE_CODES: readonly OperationFailureCode[] = [
  'BAD_REQUEST', 'UNKNOWN_KERNEL', 'BAD_ARGS', 'NO_SUCH_BUFFER', 'BUFFER_EXISTS', 'OUT_OF_MEMORY', 'DIGEST_MISMATCH', 'KERNEL_FAILED',
];

/** The result's reason is at most 512 characters (op-descriptor.ts); keep room. */
const MAX_REASON_CHARS = 480;

export class OperationError extends RuntimeError {
  constructor(public readonly code: OperationFailureCode, reason: string) {
    super(code, fitReason(reason, MAX_REASON_CHARS));
  }
}
