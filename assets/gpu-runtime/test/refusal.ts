import { expect } from 'vitest';
import { RuntimeError } from '../src/errors';

/** The typed error `action` throws (failing the test if it throws nothing, or something untyped). */
export function refusal(action: () => unknown): RuntimeError {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(RuntimeError);
    return error as RuntimeError;
  }
  throw new Error('expected a refusal, but nothing was thrown');
}

/** The error of type `type` (a RuntimeError by default) that `action` rejects with (failing the test otherwise). */
export async function asyncRefusal<T extends Error = RuntimeError>(action: () => Promise<unknown>, type: abstract new (...args: never[]) => T = RuntimeError as never): Promise<T> {
  try {
    await action();
  } catch (error) {
    expect(error).toBeInstanceOf(type);
    return error as T;
  }
  throw new Error('expected a refusal, but it succeeded');
}
