/**
 * Carries out one complete operation against the session's memory and kernels and says
 * what to answer. Refusals the enclave caused (OperationError) become {ok: false} results;
 * anything else propagates and ends the session as INTERNAL.
 *
 * The digest rule: a launch runs only when the digest in its frame headers (what SGS saw and
 * logs as the code that runs) is the SHA-384 of exactly the code it would run. (Every other
 * operation runs no code and must carry 48 zero bytes: InboundOperation checks that before
 * an htod writes anything.)
 */
import type { ComputeDevice, KernelCaller } from '../kernels/kernel';
import type { KernelRegistry } from '../kernels/registry';
import { OperationError } from '../kernels/operation-error';
import { OperationRequest, OperationResult } from '../protocol/op-descriptor';
import { DeviceMemory } from './device-memory';

export interface OperationOutcome {
  readonly result: OperationResult;
  /** dtoh: the bytes to send after the result, as chunks of `buffer`. */
  readonly data?: { readonly buffer: number; readonly bytes: Buffer };
  /** For the done message: the kernel name of a launch, else the operation's name. */
  readonly kernel: string;
  /** SHA-384 of the code that ran; 48 zero bytes when none did (non-launches, refused launches). */
  readonly codeSha384: Buffer;
  /** Microseconds the kernel itself ran. */
  readonly computeUs: number;
  /** Where the kernel ran: launches that ran only. */
  readonly device?: ComputeDevice;
}

export interface CompleteOperation {
  readonly digest: Buffer;
  readonly request?: OperationRequest;
  readonly failure?: OperationError;
}

const DIGEST_BYTES = 48;
/** The done message's kernel name for a request that did not decode. */
const UNDECODED = 'invalid';

export async function executeOperation(operation: CompleteOperation, memory: DeviceMemory, kernels: KernelRegistry, caller: KernelCaller): Promise<OperationOutcome> {
  const { request } = operation;
  const kernel = request === undefined ? UNDECODED : request.op === 'launch' ? request.kernel : request.op;
  const refused = (error: OperationError): OperationOutcome => ({
    result: { ok: false, code: error.code, reason: error.reason },
    kernel,
    codeSha384: Buffer.alloc(DIGEST_BYTES),
    computeUs: 0,
  });
  if (operation.failure || request === undefined) {
    return refused(operation.failure ?? new OperationError('BAD_REQUEST', 'no request'));
  }
  try {
    if (request.op === 'launch') {
      const implementation = kernels.get(request.kernel);
      if (!implementation) throw new OperationError('UNKNOWN_KERNEL', `no kernel named '${request.kernel}' (this context has ${[...kernels.keys()].join(', ')})`);
      const launch = implementation.prepare(request.args, memory, caller);
      if (!launch.codeSha384.equals(operation.digest)) {
        throw new OperationError('DIGEST_MISMATCH', `the frames name code ${operation.digest.toString('hex').slice(0, 16)}..., ${request.kernel} here is ${launch.codeSha384.toString('hex').slice(0, 16)}...`);
      }
      const computeUs = await launch.run();
      return { result: { ok: true }, kernel, codeSha384: launch.codeSha384, computeUs, device: launch.device };
    }
    const done = (result: OperationResult, data?: OperationOutcome['data']): OperationOutcome => ({
      result, data, kernel, codeSha384: Buffer.alloc(DIGEST_BYTES), computeUs: 0,
    });
    switch (request.op) {
      case 'malloc':
        memory.allocate(request.buffer, request.size);
        return done({ ok: true });
      case 'free':
        memory.free(request.buffer);
        return done({ ok: true });
      case 'htod':
        return done({ ok: true }); // its data was written as it arrived
      case 'dtoh': {
        const bytes = memory.read(request.buffer);
        return done({ ok: true, size: bytes.length }, { buffer: request.buffer, bytes });
      }
    }
  } catch (error) {
    if (error instanceof OperationError) return refused(error);
    throw error;
  }
}
