import { createCipheriv, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { AesGcmBackend, activeBackend, loadNativeBackend, nodeCryptoBackend, openAesGcm, sealAesGcm } from '../../src/abe/aes-gcm';
import { refusal } from './helpers';

const native = loadNativeBackend();
const backends: AesGcmBackend[] = native ? [native, nodeCryptoBackend] : [nodeCryptoBackend];
const SIZES = [0, 1, 15, 16, 17, 1024, 65_536 + 3, 1024 * 1024];

/** AES-256-GCM from node:crypto's one-shot API, the reference every backend must match. */
function reference(key: Buffer, nonce: Buffer, aad: Buffer, plaintext: Buffer): { ciphertext: Buffer; tag: Buffer } {
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(aad);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return { ciphertext, tag: cipher.getAuthTag() };
}

function params(size: number) {
  return { key: randomBytes(32), nonce: randomBytes(12), aad: randomBytes(40), plaintext: randomBytes(size) };
}

it('uses the addon when it was built, node:crypto otherwise', () => {
  expect(activeBackend.name).toBe(native ? 'native' : 'node:crypto');
});

describe.each(backends.map((backend) => [backend.name, backend] as const))('the %s backend', (_name, backend) => {
  it.each(SIZES)('seals and opens %i bytes in place, matching the reference', (size) => {
    const { key, nonce, aad, plaintext } = params(size);
    const data = Buffer.from(plaintext);
    const tag = Buffer.alloc(16);
    sealAesGcm({ key, nonce, aad, input: data, tag }, backend);
    const expected = reference(key, nonce, aad, plaintext);
    expect(data.equals(expected.ciphertext)).toBe(true);
    expect(tag.equals(expected.tag)).toBe(true);
    openAesGcm({ key, nonce, aad, input: data, tag }, backend);
    expect(data.equals(plaintext)).toBe(true);
  });

  it('seals into a separate output and leaves the input untouched', () => {
    const { key, nonce, aad, plaintext } = params(4096);
    const input = Buffer.from(plaintext);
    const output = Buffer.alloc(4096);
    const tag = Buffer.alloc(16);
    sealAesGcm({ key, nonce, aad, input, output, tag }, backend);
    expect(input.equals(plaintext)).toBe(true);
    expect(output.equals(reference(key, nonce, aad, plaintext).ciphertext)).toBe(true);
  });

  it('refuses a modified tag, ciphertext or AAD and wipes the output', () => {
    const { key, nonce, aad, plaintext } = params(256);
    const sealed = Buffer.from(plaintext);
    const tag = Buffer.alloc(16);
    sealAesGcm({ key, nonce, aad, input: sealed, tag }, backend);
    const cases = [
      { input: sealed, tag: flip(tag), aad },
      { input: flip(sealed), tag, aad },
      { input: sealed, tag, aad: flip(aad) },
    ];
    for (const c of cases) {
      const output = Buffer.alloc(sealed.length, 0xaa);
      refusal(() => openAesGcm({ key, nonce, aad: c.aad, input: c.input, output, tag: c.tag }, backend), 'AUTH_FAILED');
      expect(output.equals(Buffer.alloc(sealed.length))).toBe(true);
    }
  });

  it('refuses keys, nonces, tags and outputs of the wrong length', () => {
    const { key, nonce, aad } = params(0);
    const input = Buffer.alloc(32);
    const tag = Buffer.alloc(16);
    expect(refusal(() => sealAesGcm({ key: key.subarray(1), nonce, aad, input, tag }, backend), 'INVALID_ARGUMENT')).toMatch(/key must be 32 bytes, got 31/);
    expect(refusal(() => sealAesGcm({ key, nonce: Buffer.alloc(16), aad, input, tag }, backend), 'INVALID_ARGUMENT')).toMatch(/nonce must be 12 bytes/);
    expect(refusal(() => openAesGcm({ key, nonce, aad, input, tag: Buffer.alloc(12) }, backend), 'INVALID_ARGUMENT')).toMatch(/tag must be 16 bytes/);
    expect(refusal(() => sealAesGcm({ key, nonce, aad, input, output: Buffer.alloc(31), tag }, backend), 'INVALID_ARGUMENT')).toMatch(/output must be 32 bytes/);
  });

  it('refuses an output that overlaps the input without being it', () => {
    const { key, nonce, aad } = params(0);
    const memory = Buffer.alloc(64);
    refusal(() => sealAesGcm({ key, nonce, aad, input: memory.subarray(0, 32), output: memory.subarray(8, 40), tag: Buffer.alloc(16) }, backend), 'INVALID_ARGUMENT');
  });
});

describe.skipIf(!native)('the addon against node:crypto', () => {
  it('produces identical bytes for the same inputs, and each opens the other\'s', () => {
    for (const size of SIZES) {
      const { key, nonce, aad, plaintext } = params(size);
      const [a, b] = [Buffer.from(plaintext), Buffer.from(plaintext)];
      const [tagA, tagB] = [Buffer.alloc(16), Buffer.alloc(16)];
      sealAesGcm({ key, nonce, aad, input: a, tag: tagA }, native!);
      sealAesGcm({ key, nonce, aad, input: b, tag: tagB }, nodeCryptoBackend);
      expect(a.equals(b) && tagA.equals(tagB)).toBe(true);
      openAesGcm({ key, nonce, aad, input: a, tag: tagA }, nodeCryptoBackend);
      openAesGcm({ key, nonce, aad, input: b, tag: tagB }, native!);
      expect(a.equals(plaintext) && b.equals(plaintext)).toBe(true);
    }
  });

  it('reports wrong lengths itself when called directly, naming the argument', () => {
    const tag = Buffer.alloc(16);
    const data = Buffer.alloc(8);
    expect(() => native!.seal(Buffer.alloc(31), Buffer.alloc(12), Buffer.alloc(0), data, data, tag)).toThrow(/key must be 32 bytes, got 31/);
    expect(() => native!.seal(Buffer.alloc(32), Buffer.alloc(11), Buffer.alloc(0), data, data, tag)).toThrow(/nonce must be 12 bytes, got 11/);
    expect(() => native!.open(Buffer.alloc(32), Buffer.alloc(12), Buffer.alloc(0), data, data, Buffer.alloc(15))).toThrow(/tag must be 16 bytes, got 15/);
  });
});

function flip(bytes: Buffer, offset = 0): Buffer {
  const copy = Buffer.from(bytes);
  copy[offset] ^= 0x01;
  return copy;
}
