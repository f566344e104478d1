/**
 * The ABE v1 frame header: a CBOR map, encoded by the sealer and authenticated as the
 * AES-GCM additional data, so every field below is bound to the ciphertext.
 *
 *   { "v": 1, "session": bstr(16), "n": uint, "buffer": uint, "chunk": uint,
 *     "last": bool, "dir": 0 | 1, "digest": bstr(48) }
 *
 * Keys are encoded in that order with shortest-form heads, the bytes lib/shared/cbor.ts
 * gives for that Map. A receiver never re-encodes a header: the AAD is the bytes it received.
 */
import { encodeCbor } from '../../../../lib/shared/cbor';
import { boolField, bytesField, decodeStrictMap, uintField } from './cbor-fields';
import { AbeError } from './errors';
import { SESSION_ID_BYTES } from './key-schedule';
import { MAX_BUFFER_ID, MAX_CHUNKS, MAX_HEADER_BYTES, MAX_OPERATION } from './limits';

export const ABE_VERSION = 1;
export const DIGEST_BYTES = 48; // SHA-384 of the kernel or model the operation runs

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

/** Parses and range-checks a header; it is still unauthenticated until its frame's tag verifies. */
export function decodeFrameHeader(bytes: Buffer): FrameHeader {
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
