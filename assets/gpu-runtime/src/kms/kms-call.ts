import { KmsError } from './errors';

/**
 * How long one KMS request may take. The SDK's default is to wait forever, and an enclave
 * that reaches KMS through a vsock proxy would then hang on a dead proxy.
 */
export const KMS_TIMEOUT_MS = 30_000;

/**
 * Runs one KMS request with a deadline, and turns any failure of it (a KMS error such as
 * AccessDeniedException, a network error, the deadline) into a `KmsError` `KMS_CALL` that
 * names the operation.
 */
export async function callKms<T>(operation: string, send: (abortSignal: AbortSignal) => Promise<T>): Promise<T> {
  try {
    return await send(AbortSignal.timeout(KMS_TIMEOUT_MS));
  } catch (error) {
    const detail = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    throw new KmsError('KMS_CALL', `KMS ${operation} failed: ${detail.split('\n')[0]}`);
  }
}
