/**
 * AES-256-GCM with 12-byte nonces and 16-byte tags, writing into the caller's memory: in
 * place (output omitted) or into a separate buffer of the same length (how a frame is
 * sealed straight from the caller's plaintext into the frame, without a copy).
 *
 * Two backends produce the same bytes: the native addon (dist/aes_gcm.node, built from
 * native/aes_gcm.c against Node's own OpenSSL) when it was built, else node:crypto, which
 * cannot write into caller memory and so pays an extra allocation and copy per call.
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { loadAddon } from '../native-addon';
import { AbeError, expectLength } from './errors';

export const AES_KEY_BYTES = 32;
export const GCM_NONCE_BYTES = 12;
export const GCM_TAG_BYTES = 16;

/** One AES-256-GCM call. `output` defaults to `input` (in place) and must have its length. */
export interface GcmParams {
  readonly key: Uint8Array;
  readonly nonce: Uint8Array;
  readonly aad: Uint8Array;
  readonly input: Uint8Array;
  readonly output?: Uint8Array;
  /** Sealing writes the tag here; opening checks it. */
  readonly tag: Uint8Array;
}

/** The primitive both backends implement; arguments are already validated. */
export interface AesGcmBackend {
  readonly name: 'native' | 'node:crypto';
  seal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, input: Uint8Array, output: Uint8Array, tag: Uint8Array): void;
  /** True when the tag verifies; the output then holds the plaintext. */
  open(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, input: Uint8Array, output: Uint8Array, tag: Uint8Array): boolean;
}

export const nodeCryptoBackend: AesGcmBackend = {
  name: 'node:crypto',
  seal(key, nonce, aad, input, output, tag) {
    const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: GCM_TAG_BYTES });
    cipher.setAAD(aad);
    output.set(cipher.update(input));
    cipher.final();
    tag.set(cipher.getAuthTag());
  },
  open(key, nonce, aad, input, output, tag) {
    const decipher = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: GCM_TAG_BYTES });
    decipher.setAAD(aad);
    decipher.setAuthTag(tag);
    const plaintext = decipher.update(input);
    try {
      decipher.final(); // OpenSSL's constant-time tag comparison; throws when it fails
      output.set(plaintext);
      return true;
    } catch {
      return false;
    } finally {
      plaintext.fill(0); // a temporary copy of the plaintext: do not leave it to the collector
    }
  },
};

/** dist/aes_gcm.node (see native-addon.ts); undefined when it was not built. */
export function loadNativeBackend(): AesGcmBackend | undefined {
  const addon = loadAddon<Omit<AesGcmBackend, 'name'>>('aes_gcm');
  return addon === undefined ? undefined : { name: 'native', seal: addon.seal, open: addon.open };
}

/** The backend in use: the addon where it was built, node:crypto otherwise. */
export const activeBackend: AesGcmBackend = loadNativeBackend() ?? nodeCryptoBackend;

/** Encrypts `input` into `output` (default: in place) and writes the tag. */
export function sealAesGcm(params: GcmParams, backend: AesGcmBackend = activeBackend): void {
  const output = checkParams(params);
  backend.seal(params.key, params.nonce, params.aad, params.input, output, params.tag);
}

/**
 * Decrypts `input` into `output` (default: in place) if the tag verifies. Otherwise wipes
 * the output, which already holds unauthenticated plaintext, and throws AUTH_FAILED.
 */
export function openAesGcm(params: GcmParams, backend: AesGcmBackend = activeBackend): void {
  const output = checkParams(params);
  if (!backend.open(params.key, params.nonce, params.aad, params.input, output, params.tag)) {
    output.fill(0);
    throw new AbeError('AUTH_FAILED', 'the AES-GCM tag does not verify');
  }
}

function checkParams(params: GcmParams): Uint8Array {
  const output = params.output ?? params.input;
  expectLength('AES-256-GCM key', params.key, AES_KEY_BYTES);
  expectLength('AES-256-GCM nonce', params.nonce, GCM_NONCE_BYTES);
  expectLength('AES-256-GCM tag', params.tag, GCM_TAG_BYTES);
  expectLength('AES-256-GCM output', output, params.input.length);
  if (partiallyOverlaps(params.input, output)) {
    throw new AbeError('INVALID_ARGUMENT', 'AES-256-GCM output must be the input itself or not overlap it');
  }
  return output;
}

/** OpenSSL processes exact in-place buffers correctly, but not shifted overlapping ones. */
function partiallyOverlaps(a: Uint8Array, b: Uint8Array): boolean {
  if (a.buffer !== b.buffer || a.byteOffset === b.byteOffset || a.length === 0) return false;
  return a.byteOffset < b.byteOffset + b.length && b.byteOffset < a.byteOffset + a.length;
}
