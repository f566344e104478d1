/**
 * The header of a sealed artefact (format version 1), big-endian throughout:
 *
 *     offset size
 *      0      4   magic "EGPA"
 *      4      1   format version, 1
 *      5      4   header length in bytes, these 9 included
 *      9      4   chunk size: plaintext bytes in every chunk but the last
 *     13      2+n the KMS CiphertextBlob of the data key (length-prefixed)
 *             2+m the ARN of the KMS key that wrapped it, UTF-8 (length-prefixed)
 *             2   number of KMS encryption context pairs, then per pair a length-prefixed
 *                 UTF-8 key and value, keys in strictly increasing byte order
 *
 * Every chunk authenticates the SHA-384 of these exact bytes, so changing any of them makes
 * every chunk fail. Fields are checked against hard limits before anything is allocated.
 */
import { ArtefactError } from './errors';
import { ByteReader } from './byte-reader';

export const MAGIC = Buffer.from('EGPA', 'latin1');
export const FORMAT_VERSION = 1;

/** Magic, version and header length: enough to know how much more to read. */
const PREAMBLE_BYTES = 9;

export const MAX_HEADER_BYTES = 16 * 1024;
export const MIN_CHUNK_BYTES = 1024;
export const MAX_CHUNK_BYTES = 16 * 1024 * 1024;
export const DEFAULT_CHUNK_BYTES = 1024 * 1024;
/** A KMS ciphertext of a 32-byte key is under 200 bytes; room to spare, not room to abuse. */
export const MAX_ENCRYPTED_DATA_KEY_BYTES = 1024;
/** KMS's own limit on a key id or ARN. */
export const MAX_KEY_ID_BYTES = 2048;
export const MAX_CONTEXT_PAIRS = 64;
/** KMS's own limit on an encryption context, counted here in UTF-8 bytes of keys and values. */
export const MAX_CONTEXT_BYTES = 8192;

export interface ArtefactHeader {
  readonly chunkSize: number;
  /** The data key as KMS Encrypt returned it. */
  readonly encryptedDataKey: Uint8Array;
  /** The ARN of the KMS key that wrapped the data key. */
  readonly keyId: string;
  /** The KMS encryption context the data key was wrapped with (empty when none). */
  readonly encryptionContext: Readonly<Record<string, string>>;
}

/** The header's bytes; throws `ARTEFACT_HEADER` when a field is out of its limits. */
export function encodeHeader(header: ArtefactHeader): Buffer {
  checkChunkSize(header.chunkSize);
  const fields = [
    uint32(header.chunkSize),
    lengthPrefixed(Buffer.from(header.encryptedDataKey), 'encrypted data key', MAX_ENCRYPTED_DATA_KEY_BYTES),
    lengthPrefixed(Buffer.from(header.keyId, 'utf8'), 'key id', MAX_KEY_ID_BYTES),
    encodeContext(header.encryptionContext),
  ];
  const length = PREAMBLE_BYTES + fields.reduce((sum, field) => sum + field.length, 0);
  if (length > MAX_HEADER_BYTES) {
    throw new ArtefactError('ARTEFACT_HEADER', `header would be ${length} bytes, at most ${MAX_HEADER_BYTES}`);
  }
  return Buffer.concat([MAGIC, Buffer.of(FORMAT_VERSION), uint32(length), ...fields]);
}

/** Reads and decodes the header at the start of `reader`; returns it with its exact bytes. */
export async function readHeader(reader: ByteReader): Promise<{ header: ArtefactHeader; bytes: Buffer }> {
  const preamble = await reader.read(PREAMBLE_BYTES);
  const magic = preamble.subarray(0, MAGIC.length);
  if (!magic.equals(MAGIC.subarray(0, magic.length))) {
    throw new ArtefactError('ARTEFACT_HEADER', 'not a sealed artefact (no "EGPA" magic)');
  }
  if (preamble.length < PREAMBLE_BYTES) {
    throw new ArtefactError('ARTEFACT_TRUNCATED', `input ends after ${preamble.length} bytes, inside the header`);
  }
  const version = preamble[MAGIC.length];
  if (version !== FORMAT_VERSION) {
    throw new ArtefactError('ARTEFACT_VERSION', `format version ${version}; this runtime reads version ${FORMAT_VERSION}`);
  }
  const length = preamble.readUInt32BE(MAGIC.length + 1);
  if (length < PREAMBLE_BYTES || length > MAX_HEADER_BYTES) {
    throw new ArtefactError('ARTEFACT_HEADER', `header length ${length} is outside ${PREAMBLE_BYTES}..${MAX_HEADER_BYTES}`);
  }
  const rest = await reader.read(length - PREAMBLE_BYTES);
  if (rest.length < length - PREAMBLE_BYTES) {
    throw new ArtefactError('ARTEFACT_TRUNCATED', `input ends after ${PREAMBLE_BYTES + rest.length} bytes, inside the ${length}-byte header`);
  }
  const bytes = Buffer.concat([preamble, rest]);
  return { header: decodeHeader(bytes), bytes };
}

/** Decodes a complete header (preamble included); every byte must belong to a field. */
export function decodeHeader(bytes: Buffer): ArtefactHeader {
  const fields = new FieldReader(bytes, PREAMBLE_BYTES);
  const chunkSize = fields.uint32('chunk size');
  checkChunkSize(chunkSize);
  const encryptedDataKey = fields.lengthPrefixed('encrypted data key', MAX_ENCRYPTED_DATA_KEY_BYTES);
  if (encryptedDataKey.length === 0) {
    throw new ArtefactError('ARTEFACT_HEADER', 'encrypted data key is empty');
  }
  const keyId = fields.text('key id', MAX_KEY_ID_BYTES);
  if (keyId.length === 0) {
    throw new ArtefactError('ARTEFACT_HEADER', 'key id is empty');
  }
  const encryptionContext = decodeContext(fields);
  fields.end();
  return { chunkSize, encryptedDataKey, keyId, encryptionContext };
}

/** Throws `ARTEFACT_HEADER` unless `chunkSize` is a whole number within the format's limits. */
export function checkChunkSize(chunkSize: number): void {
  if (!Number.isInteger(chunkSize) || chunkSize < MIN_CHUNK_BYTES || chunkSize > MAX_CHUNK_BYTES) {
    throw new ArtefactError('ARTEFACT_HEADER', `chunk size ${chunkSize} is outside ${MIN_CHUNK_BYTES}..${MAX_CHUNK_BYTES}`);
  }
}

/** Pairs sorted by the UTF-8 bytes of their keys, so the same context always gives the same header. */
function encodeContext(context: Readonly<Record<string, string>>): Buffer {
  const pairs = Object.entries(context)
    .map(([key, value]) => [Buffer.from(key, 'utf8'), Buffer.from(value, 'utf8')] as const)
    .sort(([a], [b]) => Buffer.compare(a, b));
  checkContextSize(pairs.length, pairs.reduce((sum, [key, value]) => sum + key.length + value.length, 0));
  if (pairs.some(([key]) => key.length === 0)) {
    throw new ArtefactError('ARTEFACT_HEADER', 'encryption context has an empty key');
  }
  return Buffer.concat([uint16(pairs.length), ...pairs.flatMap(([key, value]) => [uint16(key.length), key, uint16(value.length), value])]);
}

function decodeContext(fields: FieldReader): Record<string, string> {
  const count = fields.uint16('encryption context size');
  checkContextSize(count, 0);
  const entries: [string, string][] = [];
  let previousKey: Buffer | undefined;
  let bytes = 0;
  for (let i = 0; i < count; i++) {
    const key = fields.lengthPrefixed('encryption context key', MAX_CONTEXT_BYTES);
    const value = fields.lengthPrefixed('encryption context value', MAX_CONTEXT_BYTES);
    if (key.length === 0 || (previousKey && Buffer.compare(previousKey, key) >= 0)) {
      throw new ArtefactError('ARTEFACT_HEADER', 'encryption context keys are empty, repeated or out of order');
    }
    bytes += key.length + value.length;
    checkContextSize(count, bytes);
    entries.push([utf8(key, 'encryption context key'), utf8(value, 'encryption context value')]);
    previousKey = key;
  }
  // fromEntries defines own properties, so a key such as "__proto__" stays a plain key.
  return Object.fromEntries(entries);
}

function checkContextSize(pairs: number, bytes: number): void {
  if (pairs > MAX_CONTEXT_PAIRS || bytes > MAX_CONTEXT_BYTES) {
    throw new ArtefactError('ARTEFACT_HEADER', `encryption context is over its limits (${MAX_CONTEXT_PAIRS} pairs, ${MAX_CONTEXT_BYTES} bytes)`);
  }
}

function lengthPrefixed(value: Buffer, what: string, maxBytes: number): Buffer {
  if (value.length > maxBytes) {
    throw new ArtefactError('ARTEFACT_HEADER', `${what} is ${value.length} bytes, at most ${maxBytes}`);
  }
  return Buffer.concat([uint16(value.length), value]);
}

function uint16(value: number): Buffer {
  const bytes = Buffer.alloc(2);
  bytes.writeUInt16BE(value);
  return bytes;
}

function uint32(value: number): Buffer {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(value);
  return bytes;
}

function utf8(bytes: Buffer, what: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new ArtefactError('ARTEFACT_HEADER', `${what} is not valid UTF-8`);
  }
}

/** Reads header fields in order; running past the end or leaving bytes over is ARTEFACT_HEADER. */
class FieldReader {
  constructor(private readonly bytes: Buffer, private offset: number) {}

  public uint16(what: string): number {
    return this.take(2, what).readUInt16BE();
  }

  public uint32(what: string): number {
    return this.take(4, what).readUInt32BE();
  }

  public lengthPrefixed(what: string, maxBytes: number): Buffer {
    const length = this.uint16(`${what} length`);
    if (length > maxBytes) {
      throw new ArtefactError('ARTEFACT_HEADER', `${what} is ${length} bytes, at most ${maxBytes}`);
    }
    return this.take(length, what);
  }

  public text(what: string, maxBytes: number): string {
    return utf8(this.lengthPrefixed(what, maxBytes), what);
  }

  public end(): void {
    if (this.offset !== this.bytes.length) {
      throw new ArtefactError('ARTEFACT_HEADER', `${this.bytes.length - this.offset} unexpected bytes at the end of the header`);
    }
  }

  private take(length: number, what: string): Buffer {
    if (this.offset + length > this.bytes.length) {
      throw new ArtefactError('ARTEFACT_HEADER', `${what} runs past the end of the header`);
    }
    const field = this.bytes.subarray(this.offset, this.offset + length);
    this.offset += length;
    return field;
  }
}
