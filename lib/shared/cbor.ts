/**
 * A small, strict CBOR (RFC 8949) codec shared by the constructs (the signature section of
 * an enclave image file) and the runtime (attestation documents, frames). Definite lengths
 * only, with a depth limit and lengths checked against the bytes that remain, so hostile
 * input cannot make it run away; text only as valid UTF-8, and map keys unique by value.
 * Encoding is deterministic: shortest-form heads, map keys in insertion order.
 */
import { TextDecoder } from 'util';

export type CborValue = number | bigint | boolean | null | undefined | string | Buffer | CborValue[] | Map<CborValue, CborValue>;

const MAX_DEPTH = 16;
/** Text strings must be valid UTF-8, decoded as they are: a replacement character, or a dropped byte-order mark, would make two encodings one string. */
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }); // a leading U+FEFF is kept, not dropped

export class CborError extends Error {}

export function decodeCbor(data: Buffer): CborValue {
  const reader = { data, offset: 0 };
  const value = readItem(reader, 0);
  if (reader.offset !== data.length) {
    throw new CborError(`${data.length - reader.offset} bytes follow the CBOR item`);
  }
  return value;
}

interface Reader {
  readonly data: Buffer;
  offset: number;
}

function take(reader: Reader, length: number): Buffer {
  if (length > reader.data.length - reader.offset) {
    throw new CborError(`truncated: needs ${length} bytes at offset ${reader.offset}, ${reader.data.length - reader.offset} remain`);
  }
  const bytes = reader.data.subarray(reader.offset, reader.offset + length);
  reader.offset += length;
  return bytes;
}

function readArgument(reader: Reader, info: number): number | bigint {
  if (info < 24) return info;
  if (info === 24) return take(reader, 1).readUInt8(0);
  if (info === 25) return take(reader, 2).readUInt16BE(0);
  if (info === 26) return take(reader, 4).readUInt32BE(0);
  if (info === 27) {
    const value = take(reader, 8).readBigUInt64BE(0);
    return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
  }
  throw new CborError(`unsupported additional information ${info} at offset ${reader.offset - 1} (indefinite lengths are not accepted)`);
}

/** A byte count or item count: every byte or item takes at least one byte, so it cannot exceed what remains. */
function readLength(reader: Reader, info: number): number {
  const length = readArgument(reader, info);
  if (typeof length === 'bigint' || length > reader.data.length - reader.offset) {
    throw new CborError(`length ${length} at offset ${reader.offset} exceeds the ${reader.data.length - reader.offset} bytes that remain`);
  }
  return length;
}

function readItem(reader: Reader, depth: number): CborValue {
  if (depth > MAX_DEPTH) {
    throw new CborError(`nested deeper than ${MAX_DEPTH}`);
  }
  const initial = take(reader, 1).readUInt8(0);
  const major = initial >> 5;
  const info = initial & 0x1f;
  switch (major) {
    case 0:
      return readArgument(reader, info);
    case 1: {
      const n = readArgument(reader, info);
      return typeof n === 'bigint' ? -1n - n : -1 - n;
    }
    case 2:
      return Buffer.from(take(reader, readLength(reader, info)));
    case 3: {
      const start = reader.offset - 1; // its head's first byte
      const bytes = take(reader, readLength(reader, info));
      try {
        return UTF8.decode(bytes);
      } catch {
        throw new CborError(`a text string at offset ${start} is not valid UTF-8`);
      }
    }
    case 4: {
      const length = readLength(reader, info);
      const items: CborValue[] = [];
      for (let i = 0; i < length; i++) items.push(readItem(reader, depth + 1));
      return items;
    }
    case 5: {
      const length = readLength(reader, info);
      const map = new Map<CborValue, CborValue>();
      const seen = new Set<string>();
      for (let i = 0; i < length; i++) {
        const keyOffset = reader.offset;
        const key = readItem(reader, depth + 1);
        // A duplicate key would let two readers see two different maps. Keys are compared by
        // what they decode to, so one written twice in two forms (a longer head, a tag) is one.
        const identity = keyIdentity(key);
        if (seen.has(identity)) {
          throw new CborError(`duplicate map key at offset ${keyOffset}`);
        }
        seen.add(identity);
        map.set(key, readItem(reader, depth + 1));
      }
      return map;
    }
    case 6:
      readArgument(reader, info); // the tag number: the tagged value is what matters here
      return readItem(reader, depth + 1);
    default:
      if (info === 20) return false;
      if (info === 21) return true;
      if (info === 22) return null;
      if (info === 23) return undefined;
      throw new CborError(`unsupported simple value or float (additional information ${info}) at offset ${reader.offset - 1}`);
  }
}

/** A decoded map key as one string: equal for equal keys, whatever their encoding was. */
function keyIdentity(key: CborValue): string {
  switch (typeof key) {
    case 'number':
    case 'bigint':
      return `i${key}`;
    case 'string':
      return `s${key}`;
    default:
      return Buffer.isBuffer(key) ? `b${key.toString('hex')}` : `c${encodeCbor(key).toString('hex')}`;
  }
}

/**
 * Encodes a value. Buffers become byte strings, strings text strings, arrays arrays, Maps
 * maps (in insertion order), non-negative safe integers and bigints unsigned integers,
 * negative ones negative integers, and booleans, null and undefined simple values.
 */
export function encodeCbor(value: CborValue): Buffer {
  const parts: Buffer[] = [];
  writeItem(parts, value, 0);
  return Buffer.concat(parts);
}

function writeHead(parts: Buffer[], major: number, argument: number | bigint): void {
  const n = BigInt(argument);
  if (n < 0n || n > 0xffffffffffffffffn) {
    throw new CborError(`argument ${n} does not fit a CBOR head`);
  }
  if (n < 24n) {
    parts.push(Buffer.from([(major << 5) | Number(n)]));
  } else if (n <= 0xffn) {
    parts.push(Buffer.from([(major << 5) | 24, Number(n)]));
  } else if (n <= 0xffffn) {
    const b = Buffer.alloc(3);
    b[0] = (major << 5) | 25;
    b.writeUInt16BE(Number(n), 1);
    parts.push(b);
  } else if (n <= 0xffffffffn) {
    const b = Buffer.alloc(5);
    b[0] = (major << 5) | 26;
    b.writeUInt32BE(Number(n), 1);
    parts.push(b);
  } else {
    const b = Buffer.alloc(9);
    b[0] = (major << 5) | 27;
    b.writeBigUInt64BE(n, 1);
    parts.push(b);
  }
}

function writeItem(parts: Buffer[], value: CborValue, depth: number): void {
  if (depth > MAX_DEPTH) {
    throw new CborError(`nested deeper than ${MAX_DEPTH}`);
  }
  if (Buffer.isBuffer(value)) {
    writeHead(parts, 2, value.length);
    parts.push(value);
  } else if (typeof value === 'string') {
    const bytes = Buffer.from(value, 'utf8');
    writeHead(parts, 3, bytes.length);
    parts.push(bytes);
  } else if (Array.isArray(value)) {
    writeHead(parts, 4, value.length);
    value.forEach((item) => writeItem(parts, item, depth + 1));
  } else if (value instanceof Map) {
    writeHead(parts, 5, value.size);
    for (const [k, v] of value) {
      writeItem(parts, k, depth + 1);
      writeItem(parts, v, depth + 1);
    }
  } else if (typeof value === 'number' || typeof value === 'bigint') {
    if (typeof value === 'number' && !Number.isSafeInteger(value)) {
      throw new CborError(`only integers are encoded, got ${value}`);
    }
    const n = BigInt(value);
    if (n >= 0n) {
      writeHead(parts, 0, n);
    } else {
      writeHead(parts, 1, -1n - n);
    }
  } else if (value === false) {
    parts.push(Buffer.from([0xf4]));
  } else if (value === true) {
    parts.push(Buffer.from([0xf5]));
  } else if (value === null) {
    parts.push(Buffer.from([0xf6]));
  } else {
    parts.push(Buffer.from([0xf7]));
  }
}
