/**
 * Strict reading of the small CBOR maps ABE puts on the wire (frame headers, handshake
 * messages): text keys, exactly the expected set, each value of its type and within its
 * limit. Anything else is MALFORMED (or TOO_LARGE for an oversized value).
 */
import { CborError, CborValue, decodeCbor } from '../../../../lib/shared/cbor';
import { AbeError } from './errors';

const MAP_HEAD = 0xa0; // major type 5 with the entry count (under 24) in the head byte

/** Decodes `bytes` (at most `maxBytes`) as a map with exactly `keys` (fewer than 24). */
export function decodeStrictMap(bytes: Buffer, maxBytes: number, keys: readonly string[], what: string): Map<CborValue, CborValue> {
  if (bytes.length > maxBytes) {
    throw new AbeError('TOO_LARGE', `${what} is ${bytes.length} bytes, more than the ${maxBytes} allowed`);
  }
  let value: CborValue;
  try {
    value = decodeCbor(bytes);
  } catch (error) {
    if (error instanceof CborError) throw new AbeError('MALFORMED', `${what} is not valid CBOR: ${error.message}`);
    throw error;
  }
  // The head must announce exactly keys.length entries (decodeCbor refuses a repeated key
  // anyway; this also refuses a map of the right keys and more).
  if (!(value instanceof Map) || bytes[0] !== MAP_HEAD + keys.length) {
    throw new AbeError('MALFORMED', `${what} must be a CBOR map of ${keys.length} entries`);
  }
  const unexpected = [...value.keys()].filter((key) => typeof key !== 'string' || !keys.includes(key));
  const missing = keys.filter((key) => !value.has(key));
  if (unexpected.length > 0 || missing.length > 0) {
    throw new AbeError('MALFORMED', `${what} must have exactly the keys ${keys.join(', ')}`);
  }
  return value;
}

/** A byte string of exactly `length` bytes. */
export function bytesField(map: Map<CborValue, CborValue>, key: string, length: number, what: string): Buffer {
  const value = map.get(key);
  if (!Buffer.isBuffer(value) || value.length !== length) {
    throw new AbeError('MALFORMED', `${what} ${key} must be a ${length}-byte string`);
  }
  return value;
}

/** A byte string of 1..maxLength bytes. */
export function boundedBytesField(map: Map<CborValue, CborValue>, key: string, maxLength: number, what: string): Buffer {
  const value = map.get(key);
  if (!Buffer.isBuffer(value) || value.length === 0) {
    throw new AbeError('MALFORMED', `${what} ${key} must be a non-empty byte string`);
  }
  if (value.length > maxLength) {
    throw new AbeError('TOO_LARGE', `${what} ${key} is ${value.length} bytes, more than the ${maxLength} allowed`);
  }
  return value;
}

/** An unsigned integer no larger than `max`. */
export function uintField(map: Map<CborValue, CborValue>, key: string, max: number, what: string): number {
  const value = map.get(key);
  if ((typeof value === 'number' || typeof value === 'bigint') && value > max) {
    throw new AbeError('TOO_LARGE', `${what} ${key} exceeds ${max}`);
  }
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new AbeError('MALFORMED', `${what} ${key} must be an unsigned integer`);
  }
  return value;
}

export function boolField(map: Map<CborValue, CborValue>, key: string, what: string): boolean {
  const value = map.get(key);
  if (typeof value !== 'boolean') {
    throw new AbeError('MALFORMED', `${what} ${key} must be a boolean`);
  }
  return value;
}
