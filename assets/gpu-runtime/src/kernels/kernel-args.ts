/**
 * Strict reading of kernel arguments (a CBOR map, op-descriptor.ts): each argument read
 * once with its type and range checked, unknown arguments refused, and every size computed
 * with overflow checks before any buffer is touched. All refusals are BAD_ARGS (or
 * NO_SUCH_BUFFER from the memory), so a launch fails cleanly and the session goes on.
 */
import type { CborValue } from '../../../../lib/shared/cbor';
import { KernelArgs, MAX_BUFFER_BYTES } from '../protocol/op-descriptor';
import type { KernelMemory } from './kernel';
import { OperationError } from './operation-error';

export const F32_BYTES = 4;
/** The most f32 elements any one buffer can hold. */
export const MAX_F32_ELEMENTS = MAX_BUFFER_BYTES / F32_BYTES;
const MAX_BUFFER_ID = 0xffff_ffff;

export class ArgsReader {
  private readonly taken = new Set<string>();

  constructor(private readonly args: KernelArgs, private readonly kernel: string) {}

  /** An unsigned integer from 0 to `max`. */
  uint(name: string, max: number): number {
    return this.checkUint(this.take(name), name, max);
  }

  /** A device buffer id (1 and up). */
  buffer(name: string): number {
    const value = this.take(name);
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > MAX_BUFFER_ID) {
      throw this.bad(`'${name}' must be a buffer id from 1 to ${MAX_BUFFER_ID}`);
    }
    return value;
  }

  /** A list of 1 to `maxItems` texts of 1 to `maxChars` characters each, all different. */
  texts(name: string, maxItems: number, maxChars: number): string[] {
    const items = this.list(name, maxItems);
    for (const item of items) {
      if (typeof item !== 'string' || item.length === 0 || item.length > maxChars) {
        throw this.bad(`'${name}' must hold texts of 1 to ${maxChars} characters`);
      }
    }
    if (new Set(items).size !== items.length) throw this.bad(`'${name}' names a value twice`);
    return items as string[];
  }

  /** A list of 1 to `maxItems` buffer ids. */
  buffers(name: string, maxItems: number): number[] {
    return this.list(name, maxItems).map((item) => {
      if (typeof item !== 'number' || !Number.isSafeInteger(item) || item < 1 || item > MAX_BUFFER_ID) {
        throw this.bad(`'${name}' must hold buffer ids from 1 to ${MAX_BUFFER_ID}`);
      }
      return item;
    });
  }

  /** A list of 1 to `maxItems` shapes, each a list of at most `maxRank` dims from 0 to `maxDim`. */
  shapes(name: string, maxItems: number, maxRank: number, maxDim: number): number[][] {
    return this.list(name, maxItems).map((shape) => {
      if (!Array.isArray(shape) || shape.length > maxRank) throw this.bad(`'${name}' must hold shapes of at most ${maxRank} dims`);
      return shape.map((dim) => this.checkUint(dim, `a dim in '${name}'`, maxDim));
    });
  }

  /** Refuses arguments that were not read: a misspelt name must not be silently ignored. */
  done(): void {
    const unexpected = [...this.args.keys()].filter((key) => !this.taken.has(key));
    if (unexpected.length > 0) throw this.bad(`unexpected argument${unexpected.length > 1 ? 's' : ''} ${unexpected.map((k) => `'${k.slice(0, 32)}'`).join(', ')}`);
  }

  bad(reason: string): OperationError {
    return new OperationError('BAD_ARGS', `${this.kernel}: ${reason}`);
  }

  private list(name: string, maxItems: number): CborValue[] {
    const value = this.take(name);
    if (!Array.isArray(value) || value.length === 0 || value.length > maxItems) {
      throw this.bad(`'${name}' must be a list of 1 to ${maxItems} items`);
    }
    return value;
  }

  private checkUint(value: CborValue, name: string, max: number): number {
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0 || value > max) {
      throw this.bad(`'${name}' must be an integer from 0 to ${max}`);
    }
    return value;
  }

  private take(name: string): CborValue {
    if (!this.args.has(name)) throw this.bad(`argument '${name}' is missing`);
    this.taken.add(name);
    return this.args.get(name);
  }
}

/**
 * The product of `factors` (each already at most MAX_F32_ELEMENTS), refused above `max`
 * before it can leave the exact integers: a * b > max is tested as a > max / b.
 */
export function checkedProduct(factors: readonly number[], max: number, refuse: (reason: string) => OperationError, what: string): number {
  if (factors.includes(0)) return 0;
  let product = 1;
  for (const factor of factors) {
    if (product > max / factor) throw refuse(`${what} (${factors.join(' x ')}) exceeds ${max}`);
    product *= factor;
  }
  return product;
}

/**
 * An f32 view of the first `count` elements of buffer `id`; BAD_ARGS when the buffer is
 * shorter. `forWrite` forgets the buffer's cached digest.
 */
export function f32View(memory: KernelMemory, id: number, count: number, forWrite: boolean, refuse: (reason: string) => OperationError, role: string): Float32Array {
  const bytes = forWrite ? memory.write(id) : memory.read(id);
  if (bytes.length < count * F32_BYTES) {
    throw refuse(`${role} buffer ${id} has ${bytes.length} bytes, ${count} f32 elements need ${count * F32_BYTES}`);
  }
  return new Float32Array(bytes.buffer, bytes.byteOffset, count);
}
