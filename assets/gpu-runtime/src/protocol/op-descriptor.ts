/**
 * What an operation asks for and what it returned: the plaintext of an operation's first
 * chunk in each direction (buffer 0), sealed like every other chunk, so SGS never learns
 * which buffer, kernel or arguments an operation is about. Data chunks follow with the
 * target buffer id in their header.
 */
import { CborValue, decodeCbor, encodeCbor } from '../../../../lib/shared/cbor';
import { WireError } from './wire-error';

/** The largest device buffer one operation may create or fill. */
export const MAX_BUFFER_BYTES = 2 ** 31;
export const MAX_DESCRIPTOR_BYTES = 16 * 1024;
const MAX_KERNEL_CHARS = 64;

/** The buffer id of descriptor chunks; device buffers are 1 and up. */
export const DESCRIPTOR_BUFFER = 0;

/** Kernel arguments: a CBOR map of names to unsigned integers, text, or lists of them. */
export type KernelArgs = Map<string, CborValue>;

export type OperationRequest =
  | { op: 'malloc'; buffer: number; size: number }
  | { op: 'free'; buffer: number }
  /** Followed by `size` bytes of data chunks for `buffer`. */
  | { op: 'htod'; buffer: number; size: number }
  | { op: 'dtoh'; buffer: number }
  | { op: 'launch'; kernel: string; args: KernelArgs };

export type OperationResult =
  /** For dtoh, followed by `size` bytes of data chunks. */
  | { ok: true; size?: number }
  | { ok: false; code: string; reason: string };

export function encodeRequest(request: OperationRequest): Buffer {
  return checkedEncode(new Map<CborValue, CborValue>(Object.entries(request)));
}

export function encodeResult(result: OperationResult): Buffer {
  return checkedEncode(new Map<CborValue, CborValue>(Object.entries(result).filter(([, v]) => v !== undefined)));
}

export function decodeRequest(bytes: Buffer): OperationRequest {
  const map = decodeMap(bytes, 'operation request');
  const op = map.get('op');
  const keys = (...names: string[]) => expectKeys(map, ['op', ...names], `a '${String(op)}' request`);
  switch (op) {
    case 'malloc': keys('buffer', 'size'); return { op, buffer: bufferId(map.get('buffer')), size: byteCount(map.get('size')) };
    case 'free': keys('buffer'); return { op, buffer: bufferId(map.get('buffer')) };
    case 'htod': keys('buffer', 'size'); return { op, buffer: bufferId(map.get('buffer')), size: byteCount(map.get('size')) };
    case 'dtoh': keys('buffer'); return { op, buffer: bufferId(map.get('buffer')) };
    case 'launch': {
      keys('kernel', 'args');
      const kernel = map.get('kernel');
      const args = map.get('args');
      if (typeof kernel !== 'string' || kernel.length === 0 || kernel.length > MAX_KERNEL_CHARS) {
        throw new WireError('MALFORMED', `a launch names its kernel in 1 to ${MAX_KERNEL_CHARS} characters`);
      }
      if (!(args instanceof Map) || [...args.keys()].some((k) => typeof k !== 'string')) {
        throw new WireError('MALFORMED', 'launch args must be a map with text keys');
      }
      return { op, kernel, args: args as KernelArgs };
    }
    default:
      throw new WireError('MALFORMED', `unknown operation '${String(op)}'`);
  }
}

export function decodeResult(bytes: Buffer): OperationResult {
  const map = decodeMap(bytes, 'operation result');
  if (map.get('ok') === true) {
    expectKeys(map, map.has('size') ? ['ok', 'size'] : ['ok'], 'a result');
    return map.has('size') ? { ok: true, size: byteCount(map.get('size')) } : { ok: true };
  }
  expectKeys(map, ['ok', 'code', 'reason'], 'a failed result');
  const code = map.get('code');
  const reason = map.get('reason');
  if (map.get('ok') !== false || typeof code !== 'string' || typeof reason !== 'string' || code.length > 32 || reason.length > 512) {
    throw new WireError('MALFORMED', 'a failed result carries ok: false, a code and a reason');
  }
  return { ok: false, code, reason };
}

function checkedEncode(map: Map<CborValue, CborValue>): Buffer {
  const bytes = encodeCbor(map);
  if (bytes.length > MAX_DESCRIPTOR_BYTES) {
    throw new WireError('TOO_LARGE', `an operation descriptor of ${bytes.length} bytes exceeds ${MAX_DESCRIPTOR_BYTES}`);
  }
  return bytes;
}

function decodeMap(bytes: Buffer, what: string): Map<CborValue, CborValue> {
  if (bytes.length > MAX_DESCRIPTOR_BYTES) throw new WireError('TOO_LARGE', `${what} of ${bytes.length} bytes exceeds ${MAX_DESCRIPTOR_BYTES}`);
  let value: CborValue;
  try {
    value = decodeCbor(bytes);
  } catch (error) {
    throw new WireError('MALFORMED', `${what}: ${(error as Error).message}`);
  }
  if (!(value instanceof Map)) throw new WireError('MALFORMED', `${what} must be a CBOR map`);
  return value;
}

function expectKeys(map: Map<CborValue, CborValue>, names: string[], what: string): void {
  if (map.size !== names.length || names.some((n) => !map.has(n))) {
    throw new WireError('MALFORMED', `${what} has the fields ${names.join(', ')}, got ${[...map.keys()].map(String).join(', ')}`);
  }
}

function bufferId(value: CborValue): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > 0xffff_ffff) {
    throw new WireError('MALFORMED', `a buffer id is an integer from 1 to ${0xffff_ffff}`);
  }
  return value;
}

function byteCount(value: CborValue): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new WireError('MALFORMED', 'a size is an unsigned integer');
  }
  if (value > MAX_BUFFER_BYTES) throw new WireError('TOO_LARGE', `a buffer of ${value} bytes exceeds ${MAX_BUFFER_BYTES}`);
  return value;
}
