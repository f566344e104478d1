/**
 * The ABE v1 frame header: a CBOR map, encoded by the sealer and authenticated as the
 * AES-GCM additional data, so every field below is bound to the ciphertext.
 *
 *   { "v": 1, "session": bstr(16), "n": uint, "buffer": uint, "chunk": uint,
 *     "last": bool, "dir": 0 | 1, "digest": bstr(48) }
 *
 * Keys are encoded in that order with shortest-form heads, the bytes lib/shared/cbor.ts
 * gives for that Map; that is a header's only encoding, and a receiver refuses any other.
 * A receiver never re-encodes a header: the AAD is the bytes it received.
 */
import { encodeCbor } from '../../../../lib/shared/cbor';
import { boolField, bytesField, decodeStrictMap, uintField } from './cbor-fields';
import { AbeError } from './errors';
import { SESSION_ID_BYTES } from './key-schedule';
import { MAX_BUFFER_ID, MAX_CHUNKS, MAX_HEADER_BYTES, MAX_OPERATION } from './limits';

export const ABE_VERSION = 1;
export const DIGEST_BYTES = 48; // SHA-384 of the kernel or model the operation runs

/** The digest of every operation other than a launch: 48 zero bytes. */
export const ZERO_DIGEST: Buffer = Buffer.alloc(DIGEST_BYTES);

/** True for a launch's digest (the SHA-384 of the code it runs): every other operation carries ZERO_DIGEST. */
export function isLaunchDigest(digest: Buffer): boolean {
  return !digest.equals(ZERO_DIGEST);
}

/** 0: enclave to host (execution context); 1: host to enclave. */
export type Direction = 0 | 1;
export const ENCLAVE_TO_HOST: Direction = 0;
export const HOST_TO_ENCLAVE: Direction = 1;

/** Refuses (INVALID_ARGUMENT) anything but 0 or 1, for callers outside the type system. */
export function checkDirection(dir: number): Direction {
  if (dir !== ENCLAVE_TO_HOST && dir !== HOST_TO_ENCLAVE) {
    throw new AbeError('INVALID_ARGUMENT', `direction must be 0 or 1, got ${dir}`);
  }
  return dir;
}

export interface FrameHeader {
  readonly session: Buffer;
  /** The operation counter: the frame's key is K_n. */
  readonly n: number;
  /** Which device buffer the chunk belongs to. */
  readonly buffer: number;
  /** Position of the chunk in the operation's stream for this direction: the nonce. */
  readonly chunk: number;
  /** True on the operation's final chunk in this direction. */
  readonly last: boolean;
  readonly dir: Direction;
  readonly digest: Buffer;
}

const KEYS = ['v', 'session', 'n', 'buffer', 'chunk', 'last', 'dir', 'digest'] as const;

const MAP_OF_8 = Buffer.of(0xa8);
const BUFFER_KEY = encodeCbor('buffer');
const CHUNK_KEY = encodeCbor('chunk');
const LAST_KEY = encodeCbor('last');

/** The header fields fixed for a whole operation in one direction. */
export type OperationFields = Pick<FrameHeader, 'session' | 'n' | 'dir' | 'digest'>;

/**
 * Encodes the headers of one operation. The map is assembled from its encoded keys and
 * values (a CBOR map is its head followed by each key and value, so the bytes are those of
 * encodeCbor on the whole map); the parts fixed for the operation are encoded once, which
 * takes the header from about half of a 1 KiB frame's sealing time to a small fraction.
 */
export class OperationHeaders {
  private readonly before: Buffer;
  private readonly after: Buffer;

  constructor(fields: OperationFields) {
    this.before = Buffer.concat([
      MAP_OF_8,
      ...[['v', ABE_VERSION], ['session', fields.session], ['n', fields.n]].flat().map((item) => encodeCbor(item)),
      BUFFER_KEY,
    ]);
    this.after = Buffer.concat([['dir', fields.dir], ['digest', fields.digest]].flat().map((item) => encodeCbor(item)));
  }

  encode(buffer: number, chunk: number, last: boolean): Buffer {
    return Buffer.concat([this.before, encodeCbor(buffer), CHUNK_KEY, encodeCbor(chunk), LAST_KEY, encodeCbor(last), this.after]);
  }
}

/**
 * Parses and range-checks a header; it is still unauthenticated until its frame's tag verifies.
 * A header has exactly one encoding (ABE.md, "Frames"), the one OperationHeaders writes, and
 * only decodeCanonicalHeader accepts; anything else is refused. The strict decoder below runs
 * only to name what is wrong (TOO_LARGE for a value beyond its limit, MALFORMED for a missing
 * key or a wrong type); a header it would accept is valid CBOR in another encoding (a key out
 * of order, a head longer than needed, a tag) and is refused as MALFORMED all the same.
 */
export function decodeFrameHeader(bytes: Buffer): FrameHeader {
  const header = decodeCanonicalHeader(bytes);
  if (header !== undefined) return header;
  decodeAnyHeader(bytes);
  throw new AbeError('MALFORMED', 'the frame header is not in its one encoding (keys in the order of ABE.md, shortest-form heads, no tags)');
}

/** The encoded keys in OperationHeaders' order, each followed by its value. */
const CANONICAL_KEYS = KEYS.map((key) => encodeCbor(key));
const SESSION_HEAD = 0x40 | SESSION_ID_BYTES; // bstr(16)
const DIGEST_HEAD = Buffer.of(0x58, DIGEST_BYTES); // bstr(48)
const FALSE = 0xf4;
const TRUE = 0xf5;

/**
 * The one encoding of a header, the layout OperationHeaders writes (keys in order,
 * shortest-form heads, every value in range): the fields read at fixed places, with no
 * generic CBOR decoding (which costs more than the AES-GCM of a small frame). It accepts
 * nothing the strict decoder below would refuse and gives the same fields; anything else
 * (another key order, a longer head than needed, a tag, a value out of range, garbage)
 * returns undefined, and decodeFrameHeader refuses it.
 */
function decodeCanonicalHeader(bytes: Buffer): FrameHeader | undefined {
  if (bytes.length > MAX_HEADER_BYTES || bytes[0] !== MAP_OF_8[0]) return undefined;
  const at = { offset: 1 };
  const key = (index: number): boolean => {
    const expected = CANONICAL_KEYS[index];
    if (bytes.length - at.offset < expected.length || bytes.compare(expected, 0, expected.length, at.offset, at.offset + expected.length) !== 0) return false;
    at.offset += expected.length;
    return true;
  };
  const uint = (max: number): number | undefined => {
    const head = bytes[at.offset];
    if (head === undefined) return undefined;
    let value: number;
    if (head < 24) {
      value = head;
      at.offset += 1;
    } else if (head === 24 && at.offset + 2 <= bytes.length && bytes[at.offset + 1] >= 24) {
      value = bytes[at.offset + 1];
      at.offset += 2;
    } else if (head === 25 && at.offset + 3 <= bytes.length) {
      value = bytes.readUInt16BE(at.offset + 1);
      if (value < 0x100) return undefined;
      at.offset += 3;
    } else if (head === 26 && at.offset + 5 <= bytes.length) {
      value = bytes.readUInt32BE(at.offset + 1);
      if (value < 0x10000) return undefined;
      at.offset += 5;
    } else if (head === 27 && at.offset + 9 <= bytes.length) {
      const big = bytes.readBigUInt64BE(at.offset + 1); // n of 2^32 and more
      if (big < 0x1_0000_0000n || big > BigInt(max)) return undefined;
      value = Number(big);
      at.offset += 9;
    } else {
      return undefined; // another major type, a tag, a truncated head
    }
    return value <= max ? value : undefined;
  };
  if (!key(0) || bytes[at.offset++] !== ABE_VERSION) return undefined;
  if (!key(1) || bytes[at.offset] !== SESSION_HEAD || bytes.length - at.offset - 1 < SESSION_ID_BYTES) return undefined;
  const session = Buffer.from(bytes.subarray(at.offset + 1, at.offset + 1 + SESSION_ID_BYTES)); // a copy, as the strict decoder gives
  at.offset += 1 + SESSION_ID_BYTES;
  const n = key(2) ? uint(MAX_OPERATION) : undefined;
  const buffer = n !== undefined && key(3) ? uint(MAX_BUFFER_ID) : undefined;
  const chunk = buffer !== undefined && key(4) ? uint(MAX_CHUNKS - 1) : undefined;
  if (n === undefined || buffer === undefined || chunk === undefined || !key(5)) return undefined;
  const lastByte = bytes[at.offset++];
  if (lastByte !== FALSE && lastByte !== TRUE) return undefined;
  if (!key(6)) return undefined;
  const dir = bytes[at.offset++];
  if (dir !== ENCLAVE_TO_HOST && dir !== HOST_TO_ENCLAVE) return undefined;
  if (!key(7) || bytes.length - at.offset !== DIGEST_HEAD.length + DIGEST_BYTES || bytes.compare(DIGEST_HEAD, 0, 2, at.offset, at.offset + 2) !== 0) return undefined;
  const digest = Buffer.from(bytes.subarray(at.offset + DIGEST_HEAD.length));
  return { session, n, buffer, chunk, last: lastByte === TRUE, dir, digest };
}

function decodeAnyHeader(bytes: Buffer): FrameHeader {
  const what = 'frame header';
  const map = decodeStrictMap(bytes, MAX_HEADER_BYTES, KEYS, what);
  if (map.get('v') !== ABE_VERSION) {
    throw new AbeError('MALFORMED', `${what} version must be ${ABE_VERSION}`);
  }
  const dir = map.get('dir');
  if (dir !== ENCLAVE_TO_HOST && dir !== HOST_TO_ENCLAVE) {
    throw new AbeError('MALFORMED', `${what} dir must be 0 or 1`);
  }
  return {
    session: bytesField(map, 'session', SESSION_ID_BYTES, what),
    n: uintField(map, 'n', MAX_OPERATION, what),
    buffer: uintField(map, 'buffer', MAX_BUFFER_ID, what),
    chunk: uintField(map, 'chunk', MAX_CHUNKS - 1, what),
    last: boolField(map, 'last', what),
    dir,
    digest: bytesField(map, 'digest', DIGEST_BYTES, what),
  };
}

/** The 12-byte GCM nonce of a chunk: dir || 00 00 00 || uint64be(chunk). */
export function chunkNonce(dir: Direction, chunk: number): Buffer {
  const nonce = Buffer.alloc(12);
  nonce[0] = dir;
  nonce.writeBigUInt64BE(BigInt(chunk), 4);
  return nonce;
}
