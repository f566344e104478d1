/**
 * The byte layout of an ABE v1 frame:
 *
 *   uint32be(L) || CBOR [ bstr(header), bstr(ciphertext), bstr(tag) ]     (L bytes after the prefix)
 *
 * The header travels as a byte string (as COSE carries its protected header) so the AAD is
 * exactly the bytes on the wire and never depends on a re-encoding. The outer array is
 * written and read here rather than with lib/shared/cbor.ts because that codec copies
 * byte strings, and a 1 MiB ciphertext must stay where it is: sealing writes it straight
 * into the frame and opening decrypts it in place. The reader accepts shortest-form heads
 * only, so a frame has exactly one encoding.
 */
import { GCM_TAG_BYTES } from './aes-gcm';
import { AbeError } from './errors';
import { FrameHeader, decodeFrameHeader } from './frame-header';
import { MAX_CHUNK_BYTES, MAX_FRAME_BYTES, MAX_HEADER_BYTES } from './limits';

export const LENGTH_PREFIX_BYTES = 4;
const ARRAY_OF_3 = 0x83;
const MAJOR_BYTES = 2;

/** A frame with its header written and views onto the ciphertext and tag still to fill. */
export interface FrameLayout {
  readonly frame: Buffer;
  readonly ciphertext: Buffer;
  readonly tag: Buffer;
}

/** A parsed frame: views into the frame's own bytes, nothing copied but the decoded header. */
export interface ParsedFrame {
  readonly headerBytes: Buffer;
  /** Unauthenticated until the tag verifies under the operation's key. */
  readonly header: FrameHeader;
  readonly ciphertext: Buffer;
  readonly tag: Buffer;
}

/**
 * Lays a frame out in `into` (its first bytes; the caller reuses it once the frame is sent)
 * or, without it, in new memory. Reusing matters for large frames: a fresh 1 MiB allocation
 * is fresh pages from the kernel, faulted in one by one, which costs about as much as
 * encrypting them.
 */
export function layOutFrame(headerBytes: Buffer, payloadLength: number, into?: Buffer): FrameLayout {
  const headerHead = bytesHead(headerBytes.length);
  const payloadHead = bytesHead(payloadLength);
  const tagHead = bytesHead(GCM_TAG_BYTES);
  const bodyLength = 1 + headerHead.length + headerBytes.length + payloadHead.length + payloadLength + tagHead.length + GCM_TAG_BYTES;
  const frameLength = LENGTH_PREFIX_BYTES + bodyLength;
  if (into !== undefined && into.length < frameLength) {
    throw new AbeError('INVALID_ARGUMENT', `the frame needs ${frameLength} bytes, the buffer given has ${into.length}`);
  }
  const frame = into === undefined ? Buffer.allocUnsafe(frameLength) : into.subarray(0, frameLength);
  let offset = frame.writeUInt32BE(bodyLength, 0);
  offset = frame.writeUInt8(ARRAY_OF_3, offset);
  offset += headerHead.copy(frame, offset);
  offset += headerBytes.copy(frame, offset);
  offset += payloadHead.copy(frame, offset);
  const ciphertext = frame.subarray(offset, offset + payloadLength);
  offset += payloadLength;
  offset += tagHead.copy(frame, offset);
  return { frame, ciphertext, tag: frame.subarray(offset, offset + GCM_TAG_BYTES) };
}

/**
 * The most bytes a frame carrying `payloadLength` bytes can take, length prefix included,
 * whatever its header (headers are at most MAX_HEADER_BYTES): layOutFrame's layout.
 */
export function maxFrameBytes(payloadLength: number): number {
  return LENGTH_PREFIX_BYTES + 1 + bytesHead(MAX_HEADER_BYTES).length + MAX_HEADER_BYTES
    + bytesHead(payloadLength).length + payloadLength + bytesHead(GCM_TAG_BYTES).length + GCM_TAG_BYTES;
}

/** Splits a whole frame (length prefix included) into its parts, checking every length. */
export function parseFrame(frame: Buffer): ParsedFrame {
  checkLengthPrefix(frame);
  const reader = { frame, offset: LENGTH_PREFIX_BYTES };
  if (frame[reader.offset++] !== ARRAY_OF_3) {
    throw new AbeError('MALFORMED', 'a frame must be a CBOR array of 3 items');
  }
  const headerBytes = readBytes(reader, MAX_HEADER_BYTES, 'header');
  const ciphertext = readBytes(reader, MAX_CHUNK_BYTES, 'ciphertext');
  const tag = readBytes(reader, GCM_TAG_BYTES, 'tag');
  if (tag.length !== GCM_TAG_BYTES) {
    throw new AbeError('MALFORMED', `the tag must be ${GCM_TAG_BYTES} bytes, got ${tag.length}`);
  }
  if (reader.offset !== frame.length) {
    throw new AbeError('MALFORMED', `${frame.length - reader.offset} bytes follow the frame's last item`);
  }
  return { headerBytes, header: decodeFrameHeader(headerBytes), ciphertext, tag };
}

/** Checks the prefix against the limit and the bytes present; returns the body length. */
export function checkLengthPrefix(frame: Buffer): number {
  if (frame.length < LENGTH_PREFIX_BYTES) {
    throw new AbeError('TRUNCATED', `a frame needs its ${LENGTH_PREFIX_BYTES}-byte length prefix, got ${frame.length} bytes`);
  }
  const bodyLength = readBodyLength(frame);
  const present = frame.length - LENGTH_PREFIX_BYTES;
  if (present < bodyLength) {
    throw new AbeError('TRUNCATED', `the frame declares ${bodyLength} bytes, ${present} present`);
  }
  if (present > bodyLength) {
    throw new AbeError('MALFORMED', `${present - bodyLength} bytes follow the frame's declared ${bodyLength}`);
  }
  return bodyLength;
}

/** The declared body length of the prefix at the start of `bytes`, refused above MAX_FRAME_BYTES. */
export function readBodyLength(bytes: Buffer): number {
  const bodyLength = bytes.readUInt32BE(0);
  if (bodyLength > MAX_FRAME_BYTES) {
    throw new AbeError('TOO_LARGE', `a frame of ${bodyLength} bytes exceeds the ${MAX_FRAME_BYTES}-byte limit`);
  }
  return bodyLength;
}

/** The shortest CBOR head of a byte string of `length` bytes. */
function bytesHead(length: number): Buffer {
  const major = MAJOR_BYTES << 5;
  if (length < 24) return Buffer.of(major | length);
  if (length <= 0xff) return Buffer.of(major | 24, length);
  if (length <= 0xffff) return Buffer.of(major | 25, length >> 8, length & 0xff);
  const head = Buffer.alloc(5);
  head[0] = major | 26;
  head.writeUInt32BE(length, 1);
  return head;
}

/** Additional information 24/25/26: the length follows in 1/2/4 bytes, and is shortest form only above these minimums. */
const LONG_HEADS = new Map([
  [24, { width: 1, minimum: 24 }],
  [25, { width: 2, minimum: 0x100 }],
  [26, { width: 4, minimum: 0x10000 }],
]);

interface Reader {
  readonly frame: Buffer;
  offset: number;
}

/** A shortest-form byte string of at most `max` bytes, as a view into the frame. */
function readBytes(reader: Reader, max: number, what: string): Buffer {
  const { frame } = reader;
  const initial = frame[reader.offset++];
  if (initial === undefined || initial >> 5 !== MAJOR_BYTES) {
    throw new AbeError('MALFORMED', `the frame's ${what} must be a CBOR byte string`);
  }
  const info = initial & 0x1f;
  const head = info < 24 ? { width: 0, minimum: 0 } : LONG_HEADS.get(info);
  if (head === undefined || reader.offset + head.width > frame.length) {
    throw new AbeError('MALFORMED', `the frame's ${what} has an invalid length head`);
  }
  const length = head.width === 0 ? info : frame.readUIntBE(reader.offset, head.width);
  reader.offset += head.width;
  if (length < head.minimum) {
    throw new AbeError('MALFORMED', `the frame's ${what} length is not in shortest form`);
  }
  if (length > max) {
    throw new AbeError('TOO_LARGE', `the frame's ${what} is ${length} bytes, more than the ${max} allowed`);
  }
  if (length > frame.length - reader.offset) {
    throw new AbeError('MALFORMED', `the frame's ${what} runs past the frame's end`);
  }
  const bytes = frame.subarray(reader.offset, reader.offset + length);
  reader.offset += length;
  return bytes;
}
