/**
 * Shared by the EGP integration tests: f32 buffers as bytes and back, and a client on a
 * local stack (real `egpu sgs` and `egpu context` processes).
 */
import { afterAll, beforeAll, expect } from 'vitest';
import { EgpClient, EgpConnectOptions } from '../../src/egp/client';
import { LocalStack, startLocalStack } from '../../src/egp/local-stack';
import { asyncRefusal } from '../refusal';

export function f32Bytes(values: readonly number[]): Buffer {
  return Buffer.from(new Float32Array(values).buffer);
}

export function f32Values(bytes: Buffer): number[] {
  return [...new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4)];
}

/**
 * A local stack for the enclosing describe block (or file): started before its tests,
 * stopped after them. Returns the stack's getter (it exists once the block's tests run).
 */
export function useLocalStack(): () => LocalStack {
  let stack: LocalStack | undefined;
  beforeAll(async () => {
    stack = await startLocalStack();
  });
  afterAll(async () => {
    await stack?.stop();
  });
  return () => {
    if (stack === undefined) throw new Error('the local stack is not started: use it inside a test');
    return stack;
  };
}

export function connect(stack: LocalStack, options: Partial<EgpConnectOptions> = {}): Promise<EgpClient> {
  return EgpClient.connect({ sgs: stack.sgsAddress, enclave: stack.enclave, ...options });
}

/** Runs `action` and checks it rejects with an Error named `name` and code `code`; returns the error. */
export async function rejection(action: () => Promise<unknown>, code: string, name = 'EgpError'): Promise<Error & { code: string; reason: string }> {
  const error = await asyncRefusal(action, Error);
  expect(error).toMatchObject({ name, code });
  return error as Error & { code: string; reason: string };
}
