import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ByteReader } from '../../src/artefact/byte-reader';
import {
  ArtefactHeader, decodeHeader, encodeHeader, MAX_CONTEXT_BYTES, MAX_CONTEXT_PAIRS, MAX_ENCRYPTED_DATA_KEY_BYTES,
  MAX_HEADER_BYTES, MAX_KEY_ID_BYTES, readHeader,
} from '../../src/artefact/header';
import { refusal } from '../refusal';

const HEADER: ArtefactHeader = {
  chunkSize: 1024 * 1024,
  encryptedDataKey: randomBytes(184),
  keyId: 'arn:aws:kms:eu-west-1:111122223333:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0',
  encryptionContext: { stage: 'prod', artefact: 'llama-3-8b', 'clé': 'värde' },
};

/** A header with its last field replaced by `context` bytes written by hand. */
function withContextBytes(context: Buffer): Buffer {
  const base = encodeHeader({ ...HEADER, encryptionContext: {} });
  const bytes = Buffer.concat([base.subarray(0, base.length - 2), context]);
  bytes.writeUInt32BE(bytes.length, 5);
  return bytes;
}

function pair(key: string, value: string): Buffer {
  const k = Buffer.from(key);
  const v = Buffer.from(value);
  const out = Buffer.alloc(4 + k.length + v.length);
  out.writeUInt16BE(k.length, 0);
  k.copy(out, 2);
  out.writeUInt16BE(v.length, 2 + k.length);
  v.copy(out, 4 + k.length);
  return out;
}

describe('artefact header', () => {
  it('encodes and decodes every field', () => {
    const bytes = encodeHeader(HEADER);
    expect(bytes.subarray(0, 5)).toEqual(Buffer.from('EGPA\u0001', 'latin1'));
    expect(bytes.readUInt32BE(5)).toBe(bytes.length);
    const decoded = decodeHeader(bytes);
    expect(decoded).toEqual({ ...HEADER, encryptedDataKey: Buffer.from(HEADER.encryptedDataKey) });
  });

  it('is canonical: the same context in any order gives the same bytes', () => {
    const reversed = Object.fromEntries(Object.entries(HEADER.encryptionContext).reverse());
    expect(encodeHeader({ ...HEADER, encryptionContext: reversed })).toEqual(encodeHeader(HEADER));
  });

  it('keeps a "__proto__" context key as a plain key', () => {
    const decoded = decodeHeader(withContextBytes(Buffer.concat([Buffer.of(0, 1), pair('__proto__', 'x')])));
    expect(Object.getPrototypeOf(decoded.encryptionContext)).toBe(Object.prototype);
    expect(Object.keys(decoded.encryptionContext)).toEqual(['__proto__']);
  });

  it('refuses fields over their limits when encoding', () => {
    const over = {
      chunkSize: { ...HEADER, chunkSize: 1023 },
      encryptedDataKey: { ...HEADER, encryptedDataKey: Buffer.alloc(MAX_ENCRYPTED_DATA_KEY_BYTES + 1) },
      keyId: { ...HEADER, keyId: 'k'.repeat(MAX_KEY_ID_BYTES + 1) },
      contextPairs: { ...HEADER, encryptionContext: Object.fromEntries(Array.from({ length: MAX_CONTEXT_PAIRS + 1 }, (_, i) => [`k${i}`, 'v'])) },
      contextBytes: { ...HEADER, encryptionContext: { big: 'v'.repeat(MAX_CONTEXT_BYTES) } },
      emptyContextKey: { ...HEADER, encryptionContext: { '': 'v' } },
    };
    for (const [what, header] of Object.entries(over)) {
      expect(refusal(() => encodeHeader(header)).code, what).toBe('ARTEFACT_HEADER');
    }
    expect(MAX_HEADER_BYTES).toBeGreaterThanOrEqual(9 + 4 + 2 + MAX_ENCRYPTED_DATA_KEY_BYTES + 2 + MAX_KEY_ID_BYTES + 2 + MAX_CONTEXT_PAIRS * 4 + MAX_CONTEXT_BYTES);
  });

  it('refuses malformed headers when decoding', () => {
    const good = encodeHeader(HEADER);
    const cases: Record<string, Buffer> = {
      'a byte too many': (() => {
        const b = Buffer.concat([good, Buffer.of(0)]);
        b.writeUInt32BE(b.length, 5);
        return b;
      })(),
      'cut short': good.subarray(0, good.length - 1),
      'empty encrypted data key': (() => {
        const b = encodeHeader({ ...HEADER, encryptedDataKey: Buffer.alloc(1) });
        const out = Buffer.concat([b.subarray(0, 13), Buffer.of(0, 0), b.subarray(16)]);
        out.writeUInt32BE(out.length, 5);
        return out;
      })(),
      'context keys out of order': withContextBytes(Buffer.concat([Buffer.of(0, 2), pair('b', '1'), pair('a', '2')])),
      'context key repeated': withContextBytes(Buffer.concat([Buffer.of(0, 2), pair('a', '1'), pair('a', '2')])),
      'context key empty': withContextBytes(Buffer.concat([Buffer.of(0, 1), pair('', '1')])),
      'context too many pairs': withContextBytes(Buffer.of(0xff, 0xff)),
      'context not UTF-8': withContextBytes(Buffer.concat([Buffer.of(0, 1, 0, 1, 0xc3, 0, 1, 0x41)])),
      'chunk size too large': (() => {
        const b = Buffer.from(good);
        b.writeUInt32BE(0xffffffff, 9);
        return b;
      })(),
    };
    for (const [what, bytes] of Object.entries(cases)) {
      expect(refusal(() => decodeHeader(bytes)).code, what).toBe('ARTEFACT_HEADER');
    }
  });

  it('readHeader takes exactly the header from the stream and leaves the rest', async () => {
    const bytes = encodeHeader(HEADER);
    const body = randomBytes(100);
    const reader = new ByteReader((async function* pieces() {
      for (const byte of Buffer.concat([bytes, body])) yield Buffer.of(byte);
    })());
    const { header, bytes: read } = await readHeader(reader);
    expect(read).toEqual(bytes);
    expect(header.keyId).toBe(HEADER.keyId);
    expect(await reader.read(1000)).toEqual(body);
    expect(await reader.read(1)).toHaveLength(0);
  });
});
