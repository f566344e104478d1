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
