import { createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { EncryptCommand } from '@aws-sdk/client-kms';
import { beforeEach, describe, expect, it } from 'vitest';
import { decodeHeader } from '../../src/artefact/header';
import { open } from '../../src/artefact/open';
import { seal } from '../../src/artefact/seal';
import { RuntimeError } from '../../src/errors';
import { collector, fakeKms, KEY_ARN, openBytes, sealBytes } from './artefact-fixtures';

const CHUNK = 1024;
const RECORD = CHUNK + 16;
const kms = fakeKms();

beforeEach(() => {
  kms.mock.reset();
  kms.install();
});

function sealOptions(extra: { encryptionContext?: Record<string, string>; chunkSize?: number } = {}) {
  return { kms: kms.client, keyId: 'alias/models', chunkSize: CHUNK, ...extra };
}

/** Header length, read from the sealed bytes (offset 5, uint32). */
function headerLength(sealed: Buffer): number {
  return sealed.readUInt32BE(5);
}

/** The error opening `sealed` fails with; the test fails if it opens. */
async function refusal(sealed: Buffer, unwrapDataKey = kms.unwrapDataKey): Promise<{ error: RuntimeError; plaintext: Buffer }> {
  const { error, plaintext } = await openBytes(sealed, { unwrapDataKey, expected: 'any' }); // format tests: which artefact is not the question
  expect(error, 'expected the artefact to be refused').toBeInstanceOf(RuntimeError);
  return { error: error as RuntimeError, plaintext };
}

describe('seal and open', () => {
  it.each([
    ['empty', 0],
    ['1 byte', 1],
    ['chunk - 1', CHUNK - 1],
    ['one chunk', CHUNK],
    ['chunk + 1', CHUNK + 1],
    ['3 MiB + 5', 3 * 1024 * 1024 + 5],
  ])('round-trips %s', async (_, length) => {
    const plaintext = randomBytes(length);
    const { sealed, result } = await sealBytes(plaintext, sealOptions());

    // Full chunks, then a final chunk that is always shorter (empty for a multiple of the size).
    const fullChunks = Math.floor(length / CHUNK);
    expect(result).toEqual({ keyId: KEY_ARN, plaintextBytes: length, chunks: fullChunks + 1 });
    expect(sealed.length).toBe(headerLength(sealed) + fullChunks * RECORD + (length % CHUNK) + 16);

    const opened = await openBytes(sealed, { unwrapDataKey: kms.unwrapDataKey, expected: 'any' });
    expect(opened.error).toBeUndefined();
    expect(opened.plaintext.equals(plaintext)).toBe(true);
    expect(opened.result).toEqual({ keyId: KEY_ARN, encryptionContext: {}, plaintextBytes: length, chunks: fullChunks + 1 });
  });

  it('round-trips with the default 1 MiB chunks', async () => {
    const plaintext = randomBytes(2 * 1024 * 1024 + 3);
    const { sealed, result } = await sealBytes(plaintext, { kms: kms.client, keyId: KEY_ARN });
    expect(decodeHeader(sealed.subarray(0, headerLength(sealed))).chunkSize).toBe(1024 * 1024);
    expect(result.chunks).toBe(3);
    expect((await openBytes(sealed, { unwrapDataKey: kms.unwrapDataKey, expected: 'any' })).plaintext.equals(plaintext)).toBe(true);
  });

  it('wraps a fresh data key with exactly one kms:Encrypt and records the key ARN and context in the header', async () => {
    const context = { artefact: 'llama-3-8b', stage: 'prod' };
    const { sealed } = await sealBytes(randomBytes(10), sealOptions({ encryptionContext: context }));
    const calls = kms.mock.commandCalls(EncryptCommand);
    expect(calls).toHaveLength(1);
    const input = calls[0].args[0].input;
    expect(Object.keys(input).sort()).toEqual(['EncryptionContext', 'KeyId', 'Plaintext']);
    expect(input).toMatchObject({ KeyId: 'alias/models', EncryptionContext: context });
    expect(input.Plaintext).toHaveLength(32);
    // Only kms:Encrypt: the key policy gives publishers nothing that returns key material.
    expect(kms.mock.calls()).toHaveLength(1);

    const header = decodeHeader(sealed.subarray(0, headerLength(sealed)));
    expect(header).toMatchObject({ chunkSize: CHUNK, keyId: KEY_ARN, encryptionContext: context });
    expect((await openBytes(sealed, { unwrapDataKey: kms.unwrapDataKey, expected: 'any' })).result?.encryptionContext).toEqual(context);
  });

  it('sends no EncryptionContext when none is given', async () => {
    await sealBytes(randomBytes(10), sealOptions());
    expect(kms.mock.commandCalls(EncryptCommand)[0].args[0].input.EncryptionContext).toBeUndefined();
  });

  it('uses a different data key for every artefact', async () => {
    const keys = await Promise.all([1, 2].map(async () => {
      const { sealed } = await sealBytes(randomBytes(10), sealOptions());
      const header = decodeHeader(sealed.subarray(0, headerLength(sealed)));
      return Buffer.from(await kms.unwrapDataKey(header.encryptedDataKey, header.keyId, header.encryptionContext));
    }));
    expect(keys[0]).not.toEqual(keys[1]);
  });

  it('writes the documented layout: nonce 0^4 || uint64(index), AAD SHA-384(header) || uint64(index) || final', async () => {
    const plaintext = randomBytes(CHUNK + 100);
    let dataKey: Buffer | undefined;
    kms.mock.on(EncryptCommand).callsFake((input: EncryptCommand['input']) => {
      dataKey = Buffer.from(input.Plaintext!);
      return { CiphertextBlob: randomBytes(184), KeyId: KEY_ARN };
    });
    const { sealed } = await sealBytes(plaintext, sealOptions());
    const headerBytes = sealed.subarray(0, headerLength(sealed));
    const chunk = (index: number, final: boolean, record: Buffer) => {
      const nonce = Buffer.alloc(12);
      nonce.writeBigUInt64BE(BigInt(index), 4);
      const position = Buffer.alloc(9);
      position.writeBigUInt64BE(BigInt(index));
      position[8] = final ? 1 : 0;
      const decipher = createDecipheriv('aes-256-gcm', dataKey!, nonce);
      decipher.setAAD(Buffer.concat([createHash('sha384').update(headerBytes).digest(), position]));
      decipher.setAuthTag(record.subarray(-16));
      return Buffer.concat([decipher.update(record.subarray(0, -16)), decipher.final()]);
    };
    const body = sealed.subarray(headerBytes.length);
    expect(chunk(0, false, body.subarray(0, RECORD))).toEqual(plaintext.subarray(0, CHUNK));
    expect(chunk(1, true, body.subarray(RECORD))).toEqual(plaintext.subarray(CHUNK));
  });

  it('zeroes the data key it sealed with, and the one it was given to open with', async () => {
    const { sealed } = await sealBytes(randomBytes(3000), sealOptions());
    const sealKey = kms.mock.commandCalls(EncryptCommand)[0].args[0].input.Plaintext!;
    expect(Buffer.from(sealKey).equals(Buffer.alloc(32))).toBe(true);

    const given: Uint8Array[] = [];
    const keeping = async (...args: Parameters<typeof kms.unwrapDataKey>) => {
      const key = await kms.unwrapDataKey(...args);
      given.push(key);
      return key;
    };
    await openBytes(sealed, { unwrapDataKey: keeping, expected: 'any' });
    const tampered = Buffer.from(sealed);
    tampered[tampered.length - 1] ^= 1;
    await refusal(tampered, keeping);
    expect(given).toHaveLength(2);
    for (const key of given) expect(Buffer.from(key).equals(Buffer.alloc(32))).toBe(true);
  });

  it('reports progress as it reads', async () => {
    const plaintext = randomBytes(5 * CHUNK);
    const sealedProgress: number[] = [];
    const { sealed } = await sealBytes(plaintext, { ...sealOptions(), onProgress: (n) => sealedProgress.push(n) });
    expect(sealedProgress.at(-1)).toBe(plaintext.length);
    const openedProgress: number[] = [];
    await openBytes(sealed, { unwrapDataKey: kms.unwrapDataKey, expected: 'any', onProgress: (n) => openedProgress.push(n) });
    expect(openedProgress).toHaveLength(6);
    expect(openedProgress.at(-1)).toBe(sealed.length);
  });
});

describe('streaming with bounded memory', () => {
  /** A lazy input that counts how many pieces have been pulled from it. */
  function countingInput(pieces: number, pieceBytes: number, make: (i: number) => Buffer = () => randomBytes(pieceBytes)) {
    const state = { pulled: 0 };
    const stream = Readable.from((function* generate() {
      for (let i = 0; i < pieces; i++) {
        state.pulled++;
        yield make(i);
      }
    })(), { objectMode: false, highWaterMark: pieceBytes });
    return { stream, state };
  }

  /** A Writable that records how many input pieces had been pulled when output first arrived. */
  function firstOutputWatcher(state: { pulled: number }) {
    const seen = { pulledAtFirstWrite: -1 };
    const stream = new Writable({
      write(_chunk, _encoding, done) {
        if (seen.pulledAtFirstWrite < 0) seen.pulledAtFirstWrite = state.pulled;
        done();
      },
    });
    return { stream, seen };
  }

  it('seal writes sealed chunks while the input is still being read', async () => {
    const input = countingInput(256, 64 * 1024);
    const output = firstOutputWatcher(input.state);
    await seal(input.stream, output.stream, sealOptions({ chunkSize: 64 * 1024 }));
    expect(input.state.pulled).toBe(256);
    expect(output.seen.pulledAtFirstWrite).toBeLessThan(8);
  });

  it('open writes plaintext while the artefact is still being read', async () => {
    const { sealed } = await sealBytes(randomBytes(16 * 1024 * 1024), sealOptions({ chunkSize: 64 * 1024 }));
    const pieceBytes = 64 * 1024;
    const input = countingInput(Math.ceil(sealed.length / pieceBytes), pieceBytes, (i) => sealed.subarray(i * pieceBytes, (i + 1) * pieceBytes));
    const output = firstOutputWatcher(input.state);
    await open(input.stream, output.stream, { unwrapDataKey: kms.unwrapDataKey, expected: 'any' });
    expect(output.seen.pulledAtFirstWrite).toBeLessThan(8);
  });
});

describe('open refuses', () => {
  /** 3 full chunks and a 512-byte final one; chunk i's record starts at header + i * RECORD. */
  async function sealedFixture() {
    const plaintext = randomBytes(3 * CHUNK + 512);
    const { sealed } = await sealBytes(plaintext, sealOptions({ encryptionContext: { artefact: 'weights' } }));
    const start = headerLength(sealed);
    const record = (i: number) => sealed.subarray(start + i * RECORD, Math.min(start + (i + 1) * RECORD, sealed.length));
    return { plaintext, sealed, start, record };
  }

  const flip = (bytes: Buffer, offset: number) => {
    const copy = Buffer.from(bytes);
    copy[offset] ^= 0x01;
    return copy;
  };

  it('a changed header field (the key ARN, the context): every chunk fails', async () => {
    const { sealed } = await sealedFixture();
    for (const field of [KEY_ARN, 'weights']) {
      const { error, plaintext } = await refusal(flip(sealed, sealed.indexOf(Buffer.from(field)) + 3));
      expect(error.code).toBe('ARTEFACT_AUTH');
      expect(error.reason).toContain('chunk 0');
      expect(plaintext).toHaveLength(0);
    }
  });

  it('a changed chunk size: the header no longer matches', async () => {
    const { sealed } = await sealedFixture();
    const changed = Buffer.from(sealed);
    changed.writeUInt32BE(2 * CHUNK, 9);
    expect((await refusal(changed)).error.code).toBe('ARTEFACT_AUTH');
  });

  it('no magic, another format version, an impossible header length', async () => {
    const { sealed } = await sealedFixture();
    expect((await refusal(flip(sealed, 0))).error.code).toBe('ARTEFACT_HEADER');
    expect((await refusal(flip(sealed, 4))).error).toMatchObject({ code: 'ARTEFACT_VERSION', reason: expect.stringContaining('format version 0') });
    const tooLong = Buffer.from(sealed);
    tooLong.writeUInt32BE(0xffffffff, 5);
    expect((await refusal(tooLong)).error.code).toBe('ARTEFACT_HEADER');
  });

  it('a changed ciphertext byte: the plaintext before that chunk is out, nothing after', async () => {
    const { sealed, start, plaintext } = await sealedFixture();
    const result = await refusal(flip(sealed, start + RECORD + 10));
    expect(result.error).toMatchObject({ code: 'ARTEFACT_AUTH', reason: expect.stringContaining('chunk 1 ') });
    expect(result.plaintext).toEqual(plaintext.subarray(0, CHUNK));
  });

  it('a changed tag, in a full chunk or the final one', async () => {
    const { sealed, start } = await sealedFixture();
    expect((await refusal(flip(sealed, start + 3 * RECORD - 1))).error.reason).toContain('chunk 2 ');
    expect((await refusal(flip(sealed, sealed.length - 1))).error.reason).toContain('chunk 3 (final)');
  });

  it('reordered chunks', async () => {
    const { sealed, start, record } = await sealedFixture();
    const swapped = Buffer.concat([sealed.subarray(0, start), record(1), record(0), record(2), record(3)]);
    expect((await refusal(swapped)).error).toMatchObject({ code: 'ARTEFACT_AUTH', reason: expect.stringContaining('chunk 0 ') });
  });

  it('a dropped middle chunk', async () => {
    const { sealed, start, record } = await sealedFixture();
    const dropped = Buffer.concat([sealed.subarray(0, start), record(0), record(2), record(3)]);
    expect((await refusal(dropped)).error).toMatchObject({ code: 'ARTEFACT_AUTH', reason: expect.stringContaining('chunk 1 ') });
  });

  it('a dropped final chunk, and a file cut at any chunk boundary: ARTEFACT_TRUNCATED', async () => {
    const { sealed, start } = await sealedFixture();
    for (let chunks = 0; chunks <= 3; chunks++) {
      const { error } = await refusal(sealed.subarray(0, start + chunks * RECORD));
      expect(error.code).toBe('ARTEFACT_TRUNCATED');
      expect(error.reason).toContain(chunks === 0 ? 'after the header' : `after chunk ${chunks - 1}`);
    }
  });

  it('a full chunk presented as the final one (cut inside the next chunk) fails authentication', async () => {
    const { sealed, start } = await sealedFixture();
    for (const cut of [start + 100, start + RECORD + 17, sealed.length - 1]) {
      expect((await refusal(sealed.subarray(0, cut))).error.code).toBe('ARTEFACT_AUTH');
    }
  });

  it('a file cut inside the header or inside a tag: ARTEFACT_TRUNCATED', async () => {
    const { sealed, start } = await sealedFixture();
    for (const cut of [0, 3, 8, 20, start - 1, start + 3 * RECORD + 15]) {
      expect((await refusal(sealed.subarray(0, cut))).error.code, `cut at ${cut}`).toBe('ARTEFACT_TRUNCATED');
    }
  });

  it('bytes appended after the final chunk', async () => {
    const { sealed } = await sealedFixture();
    expect((await refusal(Buffer.concat([sealed, Buffer.of(0)]))).error.code).toBe('ARTEFACT_AUTH');
  });

  it('the wrong data key (ARTEFACT_AUTH), and one that is not 256 bits (ARTEFACT_DATA_KEY)', async () => {
    const { sealed } = await sealedFixture();
    expect((await refusal(sealed, async () => randomBytes(32))).error).toMatchObject({ code: 'ARTEFACT_AUTH', reason: expect.stringContaining('chunk 0 ') });
    expect((await refusal(sealed, async () => randomBytes(16))).error.code).toBe('ARTEFACT_DATA_KEY');
  });

  it('an input that is not an artefact at all', async () => {
    expect((await refusal(Buffer.from('PK\u0003\u0004 a zip file, say'))).error.code).toBe('ARTEFACT_HEADER');
    expect((await refusal(Buffer.alloc(0))).error.code).toBe('ARTEFACT_TRUNCATED');
  });
});

describe('seal refuses', () => {
  it('a chunk size outside 1 KiB..16 MiB, before calling KMS', async () => {
    for (const chunkSize of [512, 16 * 1024 * 1024 + 1, 1024.5]) {
      await expect(seal(Readable.from([]), collector().stream, sealOptions({ chunkSize }))).rejects.toMatchObject({ code: 'ARTEFACT_HEADER' });
    }
    expect(kms.mock.calls()).toHaveLength(0);
  });

  it('a text stream (an encoding was set): artefacts are bytes', async () => {
    await expect(seal(Readable.from(['text']), collector().stream, sealOptions())).rejects.toThrow(TypeError);
  });
});
