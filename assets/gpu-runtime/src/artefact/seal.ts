/**
 * Seals a model artefact for storage: a fresh 256-bit data key encrypts it in fixed-size
 * AES-256-GCM chunks, and KMS wraps the data key, which travels in the header.
 *
 * Layout: header (see header.ts), then chunks of `chunkSize` plaintext bytes, each followed
 * by its tag, then one final chunk of 0 to chunkSize - 1 bytes. The final chunk is always
 * shorter than the others (empty when the length is a multiple of the chunk size), so a
 * reader knows where the artefact ends from lengths alone, and a file cut at a chunk
 * boundary is missing its final chunk.
 */
import { randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { KMSClient } from '@aws-sdk/client-kms';
import { asBytes } from './byte-reader';
import { DATA_KEY_BYTES, headerDigest, MAX_CHUNKS, sealChunk } from './chunk-cipher';
import { ArtefactError } from './errors';
import { checkChunkSize, DEFAULT_CHUNK_BYTES, encodeHeader } from './header';
import { wrapDataKey } from './kms-data-key';

export interface SealOptions {
  readonly kms: KMSClient;
  /** The KMS key (id, ARN or alias) that wraps the data key; the caller needs kms:Encrypt on it. */
  readonly keyId: string;
  /** KMS encryption context for the data key; stored in the header, and required again to open. */
  readonly encryptionContext?: Readonly<Record<string, string>>;
  /** Plaintext bytes per chunk, 1 KiB to 16 MiB. Default 1 MiB. */
  readonly chunkSize?: number;
  /** Called after each piece of input with the plaintext bytes read so far. */
  readonly onProgress?: (plaintextBytes: number) => void;
}

export interface SealResult {
  /** The ARN of the KMS key that wrapped the data key. */
  readonly keyId: string;
  readonly plaintextBytes: number;
  readonly chunks: number;
}

/**
 * Reads `input` to its end and writes the sealed artefact to `output`, which it ends.
 * Memory holds one chunk at a time, whatever the artefact's size.
 */
export async function seal(input: Readable, output: Writable, options: SealOptions): Promise<SealResult> {
  const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_BYTES;
  checkChunkSize(chunkSize); // before KMS is asked for anything
  const encryptionContext = options.encryptionContext ?? {};
  const dataKey = randomBytes(DATA_KEY_BYTES);
  try {
    const wrapped = await wrapDataKey(options.kms, options.keyId, dataKey, encryptionContext);
    const header = encodeHeader({ chunkSize, encryptedDataKey: wrapped.encryptedDataKey, keyId: wrapped.keyId, encryptionContext });
    const digest = headerDigest(header);
    let plaintextBytes = 0;
    let chunks = 0;
    const sealNext = (plaintext: Buffer, final: boolean): Buffer => {
      if (chunks >= MAX_CHUNKS) {
        throw new ArtefactError('ARTEFACT_TOO_LARGE', `input needs more than ${MAX_CHUNKS} chunks of ${chunkSize} bytes`);
      }
      return sealChunk(dataKey, digest, chunks++, final, plaintext);
    };

    await pipeline(input, async function* (source: AsyncIterable<unknown>) {
      yield header;
      const chunk = Buffer.alloc(chunkSize);
      let filled = 0;
      for await (const piece of source) {
        const bytes = asBytes(piece);
        for (let offset = 0; offset < bytes.length;) {
          const copied = bytes.copy(chunk, filled, offset);
          filled += copied;
          offset += copied;
          if (filled === chunkSize) {
            yield sealNext(chunk, false);
            filled = 0;
          }
        }
        plaintextBytes += bytes.length;
        options.onProgress?.(plaintextBytes);
      }
      yield sealNext(chunk.subarray(0, filled), true);
    }, output);
    return { keyId: wrapped.keyId, plaintextBytes, chunks };
  } finally {
    // Node's cipher contexts hold their own copies, freed with them; this is the one we own.
    dataKey.fill(0);
  }
}
