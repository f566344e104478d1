/**
 * AES-256-GCM for one chunk of an artefact. Each chunk is bound to its place:
 * - nonce = uint32be(0) || uint64be(chunk index): unique per chunk, and the data key is fresh
 *   per artefact, so a (key, nonce) pair never repeats;
 * - AAD = SHA-384(header bytes) || uint64be(chunk index) || final flag (1 byte): a chunk moved
 *   to another position or artefact, a non-final chunk presented as the last one, or a
 *   changed header all fail the tag.
 */
import { createCipheriv, createDecipheriv, createHash } from 'node:crypto';
import { ArtefactError } from './errors';

export const DATA_KEY_BYTES = 32;
export const TAG_BYTES = 16;
const NONCE_BYTES = 12;

/**
 * Chunks per artefact: 4 PiB at the default chunk size. Not a GCM limit (nonces are counters,
 * not random), a sanity bound on what a header's chunk size and an input may add up to.
 */
export const MAX_CHUNKS = 2 ** 32;

/** SHA-384 of the header bytes, the first part of every chunk's AAD. */
export function headerDigest(headerBytes: Buffer): Buffer {
  return createHash('sha384').update(headerBytes).digest();
}

/** Ciphertext followed by its 16-byte tag. */
export function sealChunk(key: Buffer, digest: Buffer, index: number, final: boolean, plaintext: Buffer): Buffer {
  const cipher = createCipheriv('aes-256-gcm', key, nonce(index), { authTagLength: TAG_BYTES });
  cipher.setAAD(aad(digest, index, final));
  return Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
}

/** The plaintext of a sealed chunk (ciphertext and tag); `ARTEFACT_AUTH` when the tag does not verify. */
export function openChunk(key: Buffer, digest: Buffer, index: number, final: boolean, sealed: Buffer): Buffer {
  const ciphertext = sealed.subarray(0, sealed.length - TAG_BYTES);
  const decipher = createDecipheriv('aes-256-gcm', key, nonce(index), { authTagLength: TAG_BYTES });
  decipher.setAAD(aad(digest, index, final));
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
  const plaintext = decipher.update(ciphertext);
  try {
    decipher.final();
  } catch {
    plaintext.fill(0);
    throw new ArtefactError('ARTEFACT_AUTH', `chunk ${index}${final ? ' (final)' : ''} failed authentication: the artefact was changed, reordered or truncated, or the data key is not its own`);
  }
  return plaintext;
}

function nonce(index: number): Buffer {
  const bytes = Buffer.alloc(NONCE_BYTES);
  bytes.writeBigUInt64BE(BigInt(index), 4);
  return bytes;
}

function aad(digest: Buffer, index: number, final: boolean): Buffer {
  const position = Buffer.alloc(9);
  position.writeBigUInt64BE(BigInt(index));
  position[8] = final ? 1 : 0;
  return Buffer.concat([digest, position]);
}
