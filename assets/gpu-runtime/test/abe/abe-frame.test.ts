import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decodeCbor, encodeCbor } from '../../../../lib/shared/cbor';
import { sealAesGcm } from '../../src/abe/aes-gcm';
import { FrameOpener, FrameSealer, sealBuffer } from '../../src/abe/frame';
import { LENGTH_PREFIX_BYTES, layOutFrame, maxFrameBytes, parseFrame } from '../../src/abe/frame-codec';
import { HOST_TO_ENCLAVE, OperationHeaders, chunkNonce } from '../../src/abe/frame-header';
import { MAX_CHUNK_BYTES, MAX_CHUNKS, MAX_FRAME_BYTES, MAX_HEADER_BYTES } from '../../src/abe/limits';
import { ReplayWindow } from '../../src/abe/replay-window';
import { TestOperation, referenceHeader, refusal, sealerAndOpener, testOperation } from './helpers';

const MiB = 1024 * 1024;

describe('round trips', () => {
  it.each([0, 1, 1024, 64 * 1024, MAX_CHUNK_BYTES])('a %i-byte chunk', (size) => {
    const { sealer, opener } = sealerAndOpener();
    const plaintext = randomBytes(size);
    const frame = sealer.seal(7, plaintext, true);
    expect(frame.length).toBeLessThanOrEqual(LENGTH_PREFIX_BYTES + MAX_FRAME_BYTES);
    const opened = opener.open(frame);
    expect(opened).toMatchObject({ buffer: 7, chunk: 0, last: true });
    expect(opened.plaintext.equals(plaintext)).toBe(true);
    expect(sealer.complete && opener.complete).toBe(true);
  });

  it('multi-chunk buffers: two buffers of one operation, reassembled by buffer id', () => {
    const { sealer, opener } = sealerAndOpener();
    const buffers = new Map([[1, randomBytes(2 * MiB + 17)], [2, randomBytes(MiB / 2)]]);
    const frames = [...sealBuffer(sealer, 1, buffers.get(1)!, false), ...sealBuffer(sealer, 2, buffers.get(2)!, true)];
    expect(frames).toHaveLength(4);
    const received = new Map<number, Buffer[]>();
    for (const frame of frames) {
      const { buffer, plaintext } = opener.open(frame);
      received.set(buffer, [...(received.get(buffer) ?? []), plaintext]);
    }
    expect(opener.complete).toBe(true);
    for (const [id, data] of buffers) expect(Buffer.concat(received.get(id)!).equals(data), `buffer ${id}`).toBe(true);
  });

  it('an empty buffer still travels as one (empty, last) chunk', () => {
    const { sealer, opener } = sealerAndOpener();
    const frames = [...sealBuffer(sealer, 0, Buffer.alloc(0), true)];
    expect(frames).toHaveLength(1);
    expect(opener.open(frames[0])).toMatchObject({ chunk: 0, last: true });
  });

  it('opens in place: the plaintext is a view into the frame', () => {
    const { sealer, opener } = sealerAndOpener();
    const frame = sealer.seal(0, randomBytes(100), true);
    expect(opener.open(frame).plaintext.buffer).toBe(frame.buffer);
  });

  it('seals into a caller\'s reusable buffer the same bytes as into new memory', () => {
    const op = testOperation();
    const [fresh, reusing] = [new FrameSealer({ ...op, key: Buffer.from(op.key) }), new FrameSealer({ ...op, key: Buffer.from(op.key) })];
    const into = Buffer.alloc(LENGTH_PREFIX_BYTES + MAX_FRAME_BYTES);
    for (const size of [10, 70_000, 5]) {
      const plaintext = randomBytes(size);
      const frame = reusing.seal(0, plaintext, false, into);
      expect(frame.buffer).toBe(into.buffer);
      expect(frame.equals(fresh.seal(0, plaintext, false))).toBe(true);
    }
  });

  it('refuses a reusable buffer too small for the frame without using up a chunk', () => {
    const { sealer, opener } = sealerAndOpener();
    expect(refusal(() => sealer.seal(0, Buffer.alloc(100), true, Buffer.alloc(100)), 'INVALID_ARGUMENT')).toMatch(/the frame needs \d+ bytes/);
    expect(opener.open(sealer.seal(0, Buffer.alloc(100), true))).toMatchObject({ chunk: 0, last: true });
  });

  it('seals without touching the caller\'s plaintext', () => {
    const { sealer } = sealerAndOpener();
    const plaintext = randomBytes(4096);
    const copy = Buffer.from(plaintext);
    sealer.seal(0, plaintext, true);
    expect(plaintext.equals(copy)).toBe(true);
  });
});

describe('headers', () => {
  it('are the CBOR map of ABE.md, byte for byte, at every integer width', () => {
    const op = testOperation();
    const widths = [0, 23, 24, 255, 256, 65_535, 65_536, 2 ** 32 - 1];
    for (const n of [0, 24, 2 ** 32, Number.MAX_SAFE_INTEGER]) {
      const headers = new OperationHeaders({ ...op, n });
      for (const value of widths) {
        for (const last of [false, true]) {
          expect(headers.encode(value, value, last).equals(referenceHeader({ ...op, n, buffer: value, chunk: value, last })), `n ${n}, value ${value}`).toBe(true);
        }
      }
    }
  });
});

describe('nonces', () => {
  it('the same plaintext sealed twice gives two frames under two different nonces', () => {
    const { sealer } = sealerAndOpener();
    const plaintext = randomBytes(64);
    const [a, b] = [parseFrame(sealer.seal(0, plaintext, false)), parseFrame(sealer.seal(0, plaintext, true))];
    expect([a.header.chunk, b.header.chunk]).toEqual([0, 1]);
    expect(chunkNonce(a.header.dir, a.header.chunk).equals(chunkNonce(b.header.dir, b.header.chunk))).toBe(false);
    expect(a.ciphertext.equals(b.ciphertext)).toBe(false);
  });

  it('carry the direction, so one K_n serves both directions without a collision', () => {
    expect(chunkNonce(0, 5).toString('hex')).toBe('000000000000000000000005');
    expect(chunkNonce(HOST_TO_ENCLAVE, 5).toString('hex')).toBe('010000000000000000000005');
  });

  it('a sealer never goes back: after its last chunk or a failure it seals nothing more', () => {
    const { sealer } = sealerAndOpener();
    sealer.seal(0, Buffer.alloc(1), true);
    refusal(() => sealer.seal(0, Buffer.alloc(1), false), 'CLOSED');
  });

  it(`a sealer stops at ${MAX_CHUNKS} chunks`, () => {
    const { sealer } = sealerAndOpener();
    const empty = Buffer.alloc(0);
    for (let i = 0; i < MAX_CHUNKS; i++) sealer.seal(0, empty, false);
    refusal(() => sealer.seal(0, empty, true), 'TOO_LARGE');
    refusal(() => sealer.seal(0, empty, true), 'CLOSED');
  });
});

describe('refused frames', () => {
  it('a duplicated chunk: REPLAY', () => {
    const { sealer, opener } = sealerAndOpener();
    const frame = sealer.seal(0, randomBytes(10), false);
    opener.open(Buffer.from(frame));
    refusal(() => opener.open(frame), 'REPLAY');
  });

  it('a duplicated last chunk after completion: REPLAY', () => {
    const { sealer, opener } = sealerAndOpener();
    const frame = sealer.seal(0, randomBytes(10), true);
    opener.open(Buffer.from(frame));
    refusal(() => opener.open(frame), 'REPLAY');
  });

  it('a replayed operation: REPLAY from the window, before any frame', () => {
    const op = testOperation({ n: 5 });
    const { sealer, opener, window } = sealerAndOpener(op);
    const frame = sealer.seal(0, randomBytes(10), true);
    opener.open(Buffer.from(frame));
    expect(window.lastAccepted).toBe(5);
    refusal(() => new FrameOpener({ ...op, key: Buffer.from(op.key), window }), 'REPLAY');
  });

  it('a frame of an earlier operation: REPLAY; of a later one: OUT_OF_ORDER', () => {
    const op = testOperation({ n: 5 });
    const earlier = new FrameSealer({ ...op, n: 4, key: Buffer.from(op.key) }).seal(0, Buffer.alloc(1), true);
    const later = new FrameSealer({ ...op, n: 6, key: Buffer.from(op.key) }).seal(0, Buffer.alloc(1), true);
    refusal(() => sealerAndOpener(op).opener.open(earlier), 'REPLAY');
    refusal(() => sealerAndOpener(op).opener.open(later), 'OUT_OF_ORDER');
  });

  it('reordered chunks: OUT_OF_ORDER', () => {
    const { sealer, opener } = sealerAndOpener();
    sealer.seal(0, randomBytes(10), false);
    const second = sealer.seal(0, randomBytes(10), true);
    refusal(() => opener.open(second), 'OUT_OF_ORDER');
  });

  it('an operation missing its last chunk: TRUNCATED', () => {
    const { sealer, opener } = sealerAndOpener();
    opener.open(sealer.seal(0, randomBytes(10), false));
    expect(opener.complete).toBe(false);
    expect(refusal(() => opener.end(), 'TRUNCATED')).toMatch(/after 1 chunks without its last chunk/);
  });

  it('a frame cut short: TRUNCATED; one with bytes after it: MALFORMED', () => {
    const frame = sealerAndOpener().sealer.seal(0, randomBytes(1000), true);
    refusal(() => sealerAndOpener().opener.open(frame.subarray(0, frame.length - 1)), 'TRUNCATED');
    refusal(() => sealerAndOpener().opener.open(frame.subarray(0, 2)), 'TRUNCATED');
    refusal(() => sealerAndOpener().opener.open(Buffer.concat([frame, Buffer.of(0)])), 'MALFORMED');
  });

  it('bit flips in the header, ciphertext and tag: AUTH_FAILED', () => {
    const op = testOperation();
    const frame = sealerAndOpener(op).sealer.seal(3, randomBytes(100), true);
    const { headerBytes, ciphertext, tag } = parseFrame(frame);
    const offsetOf = (view: Buffer) => view.byteOffset - frame.byteOffset;
    const headerOffset = offsetOf(headerBytes);
    const flips = [
      headerOffset + headerBytes.indexOf(Buffer.from('buffer')) + 6, // the buffer id 3 -> 2
      headerOffset + headerBytes.indexOf(Buffer.from('last')) + 4, // last: true (f5) -> false (f4)
      offsetOf(ciphertext),
      offsetOf(ciphertext) + 99,
      offsetOf(tag) + 15,
    ];
    for (const offset of flips) {
      const tampered = Buffer.from(frame);
      tampered[offset] ^= 0x01;
      refusal(() => sealerAndOpener(op).opener.open(tampered), 'AUTH_FAILED');
    }
  });

  it('no single-bit change anywhere in a frame is accepted', () => {
    const op = testOperation();
    const frame = sealerAndOpener(op).sealer.seal(0, randomBytes(32), true);
    for (let offset = 0; offset < frame.length; offset++) {
      const tampered = Buffer.from(frame);
      tampered[offset] ^= 0x04;
      expect(() => sealerAndOpener(op).opener.open(tampered), `byte ${offset}`).toThrow(expect.objectContaining({ name: 'AbeError' }));
    }
  });

  it('a frame of another session: WRONG_SESSION; of the other direction: WRONG_DIRECTION; for another kernel: WRONG_DIGEST', () => {
    const op = testOperation();
    const seal = (overrides: object) => new FrameSealer({ ...op, key: Buffer.from(op.key), ...overrides }).seal(0, Buffer.alloc(8), true);
    refusal(() => sealerAndOpener(op).opener.open(seal({ session: randomBytes(16) })), 'WRONG_SESSION');
    refusal(() => sealerAndOpener(op).opener.open(seal({ dir: HOST_TO_ENCLAVE })), 'WRONG_DIRECTION');
    refusal(() => sealerAndOpener(op).opener.open(seal({ digest: randomBytes(48) })), 'WRONG_DIGEST');
  });

  it('a frame under another key: AUTH_FAILED', () => {
    const op = testOperation();
    const frame = new FrameSealer({ ...op, key: randomBytes(32) }).seal(0, Buffer.alloc(8), true);
    refusal(() => sealerAndOpener(op).opener.open(frame), 'AUTH_FAILED');
  });

  it('after any refusal the operation is over: even the genuine next frame is CLOSED', () => {
    const { sealer, opener } = sealerAndOpener();
    const first = sealer.seal(0, randomBytes(10), false);
    const tampered = Buffer.from(first);
    tampered[tampered.length - 1] ^= 0x01;
    refusal(() => opener.open(tampered), 'AUTH_FAILED');
    refusal(() => opener.open(first), 'CLOSED');
  });

  it('a forged first frame does not move the replay window', () => {
    const op = testOperation({ n: 9 });
    const window = new ReplayWindow();
    const forged = new FrameSealer({ ...op, key: randomBytes(32) }).seal(0, Buffer.alloc(8), true);
    refusal(() => new FrameOpener({ ...op, key: Buffer.from(op.key), window }).open(forged), 'AUTH_FAILED');
    expect(window.lastAccepted).toBe(-1);
  });
});

describe('limits', () => {
  it('refuses a chunk over 1 MiB before sealing anything', () => {
    const { sealer } = sealerAndOpener();
    refusal(() => sealer.seal(0, Buffer.alloc(MAX_CHUNK_BYTES + 1), true), 'TOO_LARGE');
    expect(() => sealer.seal(0, Buffer.alloc(1), true)).not.toThrow(); // the sealer is still usable
  });

  it('refuses to seal a buffer id beyond 2^32 - 1 (TOO_LARGE) or not a whole number (INVALID_ARGUMENT), without using up a chunk', () => {
    const { sealer, opener } = sealerAndOpener();
    for (const buffer of [2 ** 32, 2 ** 53, Infinity]) refusal(() => sealer.seal(buffer, Buffer.alloc(1), true), 'TOO_LARGE');
    for (const buffer of [-1, 1.5, NaN]) refusal(() => sealer.seal(buffer, Buffer.alloc(1), true), 'INVALID_ARGUMENT');
    expect(opener.open(sealer.seal(2 ** 32 - 1, Buffer.alloc(1), true))).toMatchObject({ buffer: 2 ** 32 - 1, chunk: 0 });
  });

  it('refuses an operation counter beyond 2^53 - 1 (TOO_LARGE) or not a whole number (INVALID_ARGUMENT)', () => {
    for (const n of [2 ** 53, 2 ** 64]) {
      refusal(() => new FrameSealer({ ...testOperation({ n }) }), 'TOO_LARGE');
      refusal(() => new FrameOpener({ ...testOperation({ n }), window: new ReplayWindow() }), 'TOO_LARGE');
    }
    for (const n of [-1, 1.5]) refusal(() => new FrameSealer({ ...testOperation({ n }) }), 'INVALID_ARGUMENT');
  });

  it('refuses a length prefix over the frame limit, and a ciphertext over the chunk limit', () => {
    const frame = sealerAndOpener().sealer.seal(0, Buffer.alloc(8), true);
    const huge = Buffer.from(frame);
    huge.writeUInt32BE(MAX_FRAME_BYTES + 1, 0);
    refusal(() => sealerAndOpener().opener.open(huge), 'TOO_LARGE');
    const { headerBytes } = parseFrame(frame);
    const oversized = rebuild(headerBytes, Buffer.alloc(MAX_CHUNK_BYTES + 1), Buffer.alloc(16));
    refusal(() => sealerAndOpener().opener.open(oversized), 'TOO_LARGE');
  });

  it('refuses header fields beyond their limits and headers that are not exactly the v1 map', () => {
    const op = testOperation();
    const base = { session: op.session, n: 1, buffer: 0, chunk: 0, last: true, dir: 0 as const, digest: op.digest };
    const open = (header: Buffer) => sealerAndOpener(op).opener.open(rebuild(header, Buffer.alloc(0), Buffer.alloc(16)));
    refusal(() => open(referenceHeader({ ...base, chunk: MAX_CHUNKS })), 'TOO_LARGE');
    refusal(() => open(referenceHeader({ ...base, buffer: 2 ** 32 })), 'TOO_LARGE');
    refusal(() => open(referenceHeader({ ...base, n: 2n ** 53n })), 'TOO_LARGE');
    refusal(() => open(referenceHeader({ ...base, session: Buffer.alloc(15) })), 'MALFORMED');
    refusal(() => open(referenceHeader({ ...base, dir: 2 as 0 })), 'MALFORMED');
    refusal(() => open(Buffer.concat([Buffer.of(0xa9), referenceHeader(base).subarray(1), Buffer.from([0x61, 0x78, 0x00])])), 'MALFORMED'); // an extra key
    refusal(() => open(Buffer.concat([Buffer.of(0xa9), referenceHeader(base).subarray(1), Buffer.from([0x61, 0x6e, 0x02])])), 'MALFORMED'); // "n" twice
    refusal(() => open(referenceHeader({ ...base, last: 1 as unknown as boolean })), 'MALFORMED');
    refusal(() => open(Buffer.alloc(300)), 'TOO_LARGE');
  });

  it('refuses length heads that are not in shortest form (one encoding per frame)', () => {
    const frame = sealerAndOpener().sealer.seal(0, Buffer.alloc(8), true);
    const { headerBytes, ciphertext, tag } = parseFrame(frame);
    const longTagHead = Buffer.concat([Buffer.of(0x83), bytesHead(headerBytes.length), headerBytes, bytesHead(8), ciphertext, Buffer.of(0x58, 16), tag]);
    refusal(() => sealerAndOpener().opener.open(prefixed(longTagHead)), 'MALFORMED');
  });
});

describe('one encoding per header', () => {
  const op = testOperation({ n: 1 });
  const fields = { session: op.session, n: 1, buffer: 3, chunk: 0, last: true, dir: op.dir, digest: op.digest };
  const canonical = referenceHeader(fields);
  const plaintext = Buffer.from('sealed under the right key');
  /** `header` swapped at `at` (an offset into the canonical header) for `replaced` bytes by `by`. */
  const splice = (at: number, replaced: number, by: number[]) => Buffer.concat([canonical.subarray(0, at), Buffer.from(by), canonical.subarray(at + replaced)]);
  const after = (key: string) => canonical.indexOf(encodeCbor(key)) + encodeCbor(key).length;

  it('the reference header, sealed by hand under K_n, opens (so the refusals below are the encoding\'s)', () => {
    const opened = sealerAndOpener(op).opener.open(sealWithHeader(op, canonical, plaintext));
    expect(opened).toMatchObject({ buffer: 3, chunk: 0, last: true });
    expect(opened.plaintext.equals(plaintext)).toBe(true);
  });

  it.each([
    ['a non-shortest head for v (18 01)', () => splice(after('v'), 1, [0x18, 0x01])],
    ['an 8-byte head for a small n', () => splice(after('n'), 1, [0x1b, 0, 0, 0, 0, 0, 0, 0, 1])],
    ['a 4-byte head for a small buffer id', () => splice(after('buffer'), 1, [0x1a, 0, 0, 0, 3])],
    ['a tagged session (tag 64)', () => splice(after('session'), 0, [0xd8, 0x40])],
    ['a tagged n (tag 0x1234)', () => splice(after('n'), 0, [0xd9, 0x12, 0x34])],
    ['a non-shortest byte-string head for the session', () => splice(after('session'), 1, [0x58, 0x10])],
    ['a non-shortest byte-string head for the digest', () => splice(after('digest'), 2, [0x59, 0x00, 0x30])],
    ['keys in another order', () => encodeCbor(new Map<string, number | boolean | Buffer>([
      ['v', 1], ['session', fields.session], ['n', 1], ['chunk', 0], ['buffer', 3], ['last', true], ['dir', fields.dir], ['digest', fields.digest],
    ]))],
  ])('%s: MALFORMED, even sealed under the right key', (_, header) => {
    const bytes = header();
    expect(decodeCbor(bytes)).toBeInstanceOf(Map); // valid CBOR, the v1 fields, another encoding
    expect(bytes.equals(canonical)).toBe(false);
    expect(refusal(() => sealerAndOpener(op).opener.open(sealWithHeader(op, bytes, plaintext)), 'MALFORMED')).toMatch(/one encoding/);
  });

  it('an n of 2^32 and more (an 8-byte head, its shortest form) opens', () => {
    for (const n of [2 ** 32, Number.MAX_SAFE_INTEGER]) {
      const { sealer, opener } = sealerAndOpener(testOperation({ n }));
      expect(opener.open(sealer.seal(0, plaintext, true)).plaintext.equals(plaintext), `n ${n}`).toBe(true);
    }
  });

  it('a value out of range keeps its own code (TOO_LARGE)', () => {
    const header = referenceHeader({ ...fields, buffer: 2 ** 32 });
    refusal(() => sealerAndOpener(op).opener.open(sealWithHeader(op, header, plaintext)), 'TOO_LARGE');
  });
});

describe('keys are zeroised', () => {
  const zero = Buffer.alloc(32);

  it('when the operation completes, on both sides', () => {
    const op = testOperation();
    const sealerKey = Buffer.from(op.key);
    const openerKey = Buffer.from(op.key);
    const sealer = new FrameSealer({ ...op, key: sealerKey });
    const opener = new FrameOpener({ ...op, key: openerKey, window: new ReplayWindow() });
    opener.open(sealer.seal(0, randomBytes(10), false));
    expect(sealerKey.equals(zero) || openerKey.equals(zero)).toBe(false);
    opener.open(sealer.seal(0, randomBytes(10), true));
    expect(sealerKey.equals(zero)).toBe(true);
    expect(openerKey.equals(zero)).toBe(true);
  });

  it('when an operation fails, is cut short or is aborted', () => {
    const op = testOperation();
    const failed = Buffer.from(op.key);
    refusal(() => new FrameOpener({ ...op, key: failed, window: new ReplayWindow() }).open(Buffer.alloc(2)), 'TRUNCATED');
    const cut = Buffer.from(op.key);
    refusal(() => new FrameOpener({ ...op, key: cut, window: new ReplayWindow() }).end(), 'TRUNCATED');
    const aborted = Buffer.from(op.key);
    new FrameSealer({ ...op, key: aborted }).abort();
    const refused = Buffer.from(op.key);
    const window = new ReplayWindow();
    window.accept(op.n);
    refusal(() => new FrameOpener({ ...op, key: refused, window }), 'REPLAY');
    for (const key of [failed, cut, aborted, refused]) expect(key.equals(zero)).toBe(true);
  });
});

function bytesHead(length: number): Buffer {
  if (length < 24) return Buffer.of(0x40 | length);
  if (length < 256) return Buffer.of(0x58, length);
  if (length < 65536) return Buffer.of(0x59, length >> 8, length & 0xff);
  const head = Buffer.alloc(5);
  head[0] = 0x5a;
  head.writeUInt32BE(length, 1);
  return head;
}

function prefixed(body: Buffer): Buffer {
  const prefix = Buffer.alloc(4);
  prefix.writeUInt32BE(body.length);
  return Buffer.concat([prefix, body]);
}

/** A frame with any header bytes, sealed as chunk 0 of `op` under its key, as a sealer would. */
function sealWithHeader(op: TestOperation, header: Buffer, plaintext: Buffer): Buffer {
  const ciphertext = Buffer.from(plaintext);
  const tag = Buffer.alloc(16);
  sealAesGcm({ key: op.key, nonce: chunkNonce(op.dir, 0), aad: header, input: ciphertext, tag });
  return rebuild(header, ciphertext, tag);
}

/** A frame assembled from arbitrary parts, for inputs a sealer would never produce. */
function rebuild(header: Buffer, ciphertext: Buffer, tag: Buffer): Buffer {
  return prefixed(Buffer.concat([Buffer.of(0x83), bytesHead(header.length), header, bytesHead(ciphertext.length), ciphertext, bytesHead(tag.length), tag]));
}

describe('maxFrameBytes', () => {
  it.each([0, 1, 23, 24, 255, 256, 65_535, 65_536, MAX_CHUNK_BYTES])('is exactly the frame of a largest header and %i payload bytes', (payload) => {
    expect(maxFrameBytes(payload)).toBe(layOutFrame(Buffer.alloc(MAX_HEADER_BYTES), payload).frame.length);
    expect(layOutFrame(Buffer.alloc(40), payload).frame.length).toBeLessThan(maxFrameBytes(payload));
  });
});
