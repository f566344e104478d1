/**
 * Kernel arguments as an application writes them (a plain object of unsigned integers,
 * texts and lists of them) and as the wire carries them (a CBOR map, op-descriptor.ts).
 */
import type { CborValue } from '../../../../lib/shared/cbor';
import { KernelArgs } from '../protocol/op-descriptor';
import { EgpError } from './errors';

export type KernelArgValue = number | string | readonly KernelArgValue[];
export type KernelArgsInput = Readonly<Record<string, KernelArgValue>> | KernelArgs;

const MAX_ARGS = 64;
const MAX_LIST_ITEMS = 4096;
const MAX_DEPTH = 3;

/** Converts and checks arguments: unsigned safe integers, texts, lists of those (nested at most 3 deep). */
export function toKernelArgs(input: KernelArgsInput): KernelArgs {
  const entries = input instanceof Map ? [...input.entries()] : Object.entries(input);
  if (entries.length > MAX_ARGS) throw new EgpError('INVALID_ARGUMENT', `a launch takes at most ${MAX_ARGS} arguments`);
  const args: KernelArgs = new Map();
  for (const [name, value] of entries) {
    if (typeof name !== 'string' || name.length === 0 || name.length > 64) {
      throw new EgpError('INVALID_ARGUMENT', 'argument names are texts of 1 to 64 characters');
    }
    args.set(name, checkValue(value as CborValue, name, 0));
  }
  return args;
}

function checkValue(value: CborValue, name: string, depth: number): CborValue {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) throw new EgpError('INVALID_ARGUMENT', `argument '${name}': numbers are unsigned integers`);
    return value;
  }
  if (typeof value === 'string') return value;
  if (Array.isArray(value) && depth < MAX_DEPTH && value.length <= MAX_LIST_ITEMS) {
    return value.map((item) => checkValue(item, name, depth + 1));
  }
  throw new EgpError('INVALID_ARGUMENT', `argument '${name}' must be an unsigned integer, a text, or a list of them (at most ${MAX_LIST_ITEMS} items, ${MAX_DEPTH} deep)`);
}

/** Every integer in the arguments that names one of `buffers`: the buffers a launch may touch. */
export function referencedBuffers(args: KernelArgs, buffers: { has(id: number): boolean }): number[] {
  const found = new Set<number>();
  const visit = (value: CborValue): void => {
    if (typeof value === 'number' && buffers.has(value)) found.add(value);
    else if (Array.isArray(value)) value.forEach(visit);
  };
  args.forEach(visit);
  return [...found];
}
