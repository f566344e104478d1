/**
 * Opens a sealed artefact (see seal.ts for the layout): reads the header, has the data key
 * unwrapped, and authenticates each chunk before writing its plaintext.
 */
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ByteReader } from './byte-reader';
import { DATA_KEY_BYTES, headerDigest, MAX_CHUNKS, openChunk, TAG_BYTES } from './chunk-cipher';
import { ArtefactError } from './errors';
import { readHeader } from './header';

/**
 * Returns the plaintext data key for the header's encrypted data key, KMS key and
 * encryption context. Inside an enclave: `unwrapWithKmsRecipient` (kms-data-key.ts).
 * `open` owns the returned bytes and zeroes them when done.
 */
export type UnwrapDataKey = (
  encryptedDataKey: Uint8Array,
  keyId: string,
  encryptionContext: Readonly<Record<string, string>>,
) => Promise<Uint8Array>;

/**
 * Which artefact the caller means to open. Every artefact sealed under one KMS key opens with
 * that key, so without this, whoever can replace the file (the parent instance, a bucket
 * writer) could hand the enclave another model, or an older version of this one. And the
 * encryption context is no secret: without the key, whoever can encrypt under any other key
 * the instance role may decrypt with could seal their own model under the same context.
 */
export interface ExpectedArtefact {
  /** The encryption context it must have been sealed with, exactly: name it and its version when sealing. */
  readonly encryptionContext: Readonly<Record<string, string>>;
  /** The ARN of the KMS key that must have wrapped its data key (the AttestationBoundKey's). */
  readonly keyArn: string;
}

export interface OpenOptions {
  readonly unwrapDataKey: UnwrapDataKey;
  /**
   * The artefact meant: checked against the header before KMS is asked for the data key.
   * 'any' opens whatever artefact the key opens (only where the file cannot be replaced).
   */
  readonly expected: ExpectedArtefact | 'any';
  /** Called after each chunk with the artefact bytes read so far. */
  readonly onProgress?: (artefactBytes: number) => void;
}

export interface OpenResult {
  /** The ARN of the KMS key that wrapped the data key, from the (now authenticated) header. */
  readonly keyId: string;
  readonly encryptionContext: Readonly<Record<string, string>>;
  readonly plaintextBytes: number;
  readonly chunks: number;
}

/**
 * Reads the sealed artefact from `input` and writes its plaintext to `output`, which it ends.
 * Memory holds one chunk at a time. Plaintext is written chunk by chunk as each one
 * authenticates, so when this throws, `output` has received an authentic but incomplete
 * prefix: discard it (the CLI writes to a temporary file and renames it only on success).
 */
export async function open(input: Readable, output: Writable, options: OpenOptions): Promise<OpenResult> {
  let result: OpenResult | undefined;
  await pipeline(input, async function* (source: AsyncIterable<unknown>) {
    const reader = new ByteReader(source[Symbol.asyncIterator]());
    const { header, bytes } = await readHeader(reader);
    checkExpected(header.keyId, header.encryptionContext, options.expected);
    const digest = headerDigest(bytes);
    const recordBytes = header.chunkSize + TAG_BYTES;
    const key = await options.unwrapDataKey(header.encryptedDataKey, header.keyId, header.encryptionContext);
    const dataKey = Buffer.from(key.buffer, key.byteOffset, key.byteLength);
    try {
      if (dataKey.length !== DATA_KEY_BYTES) {
        throw new ArtefactError('ARTEFACT_DATA_KEY', `data key is ${dataKey.length} bytes; AES-256 needs ${DATA_KEY_BYTES}`);
      }
      let plaintextBytes = 0;
      for (let index = 0; ; index++) {
        if (index >= MAX_CHUNKS) {
          throw new ArtefactError('ARTEFACT_TOO_LARGE', `artefact has more than ${MAX_CHUNKS} chunks`);
        }
        const record = await reader.read(recordBytes);
        // Only the final chunk is shorter than a full record; a full one is never the last.
        const final = record.length < recordBytes;
        if (record.length < TAG_BYTES) {
          const where = record.length > 0 ? `inside chunk ${index}'s tag` : index > 0 ? `after chunk ${index - 1}` : 'after the header';
          throw new ArtefactError('ARTEFACT_TRUNCATED', `input ends ${where}, without the final chunk`);
        }
        const plaintext = openChunk(dataKey, digest, index, final, record);
        plaintextBytes += plaintext.length;
        options.onProgress?.(reader.bytesRead);
        yield plaintext;
        if (final) {
          result = { keyId: header.keyId, encryptionContext: header.encryptionContext, plaintextBytes, chunks: index + 1 };
          return;
        }
      }
    } finally {
      dataKey.fill(0);
    }
  }, output);
  if (!result) {
    throw new Error('open: the artefact pipeline finished without its final chunk');
  }
  return result;
}

/**
 * Refuses (ARTEFACT_MISMATCH) an artefact other than the one expected. The header is not
 * authenticated yet, but KMS refuses its data key under any other context or key, and the
 * chunks are bound to the header: a changed header cannot get past either.
 */
function checkExpected(keyId: string, context: Readonly<Record<string, string>>, expected: ExpectedArtefact | 'any'): void {
  if (expected === 'any') return;
  const describe = (c: Readonly<Record<string, string>>) => JSON.stringify(Object.fromEntries(Object.entries(c).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))));
  if (describe(context) !== describe(expected.encryptionContext)) {
    throw new ArtefactError('ARTEFACT_MISMATCH', `the artefact was sealed with encryption context ${describe(context)}, expected ${describe(expected.encryptionContext)}: it is another artefact (or another version) under the same key`);
  }
  if (keyId !== expected.keyArn) {
    throw new ArtefactError('ARTEFACT_MISMATCH', `the artefact's data key is wrapped by ${keyId}, expected ${expected.keyArn}`);
  }
}
