import { Token } from 'aws-cdk-lib';
import { IConstruct } from 'constructs';

/**
 * The error a construct throws at synth time for a bad prop: it names the construct, the
 * prop, what is wrong and how to fix it.
 */
export function propError(scope: IConstruct, prop: string, problem: string, fix: string): Error {
  return new Error(`${scope.node.path}: ${prop} ${problem}. ${fix}`);
}

/** Requires a concrete whole number in [min, max] (tokens cannot be rendered into config files). */
export function requireWholeNumber(scope: IConstruct, prop: string, value: number, min: number, max: number): number {
  if (Token.isUnresolved(value)) {
    throw propError(scope, prop, 'is a token', 'It is rendered into boot configuration at synth time: pass a concrete number');
  }
  if (!Number.isInteger(value) || value < min || value > max) {
    throw propError(scope, prop, `must be a whole number from ${min} to ${max}, got ${value}`, `Set ${prop} within that range`);
  }
  return value;
}
