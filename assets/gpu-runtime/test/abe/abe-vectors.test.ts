/**
 * The published known-answer vectors (test/vectors/abe-v1.json): recomputed once through
 * the ABE modules, and once from first principles with node:crypto alone, so the vectors,
 * the code and ABE.md can only agree if all three say the same thing.
 */
import { createCipheriv, createECDH, createHash, createHmac, hkdfSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { nodeCryptoBackend } from '../../src/abe/aes-gcm';
import { FrameOpener, FrameSealer } from '../../src/abe/frame';
import { Direction } from '../../src/abe/frame-header';
import { ImagePcrs, createEcdhKeyPair, deriveOperationKey, deriveSessionKey, ecdhSharedSecret, pcrSalt, publicKeyOf, sessionInfo } from '../../src/abe/key-schedule';
import { ReplayWindow } from '../../src/abe/replay-window';

const vectors = JSON.parse(readFileSync(path.join(__dirname, '..', 'vectors', 'abe-v1.json'), 'utf8'));
const hex = (value: string): Buffer => Buffer.from(value, 'hex');
const inputs = {
  contextPrivateKey: hex(vectors.inputs.contextPrivateKey),
  enclavePrivateKey: hex(vectors.inputs.enclavePrivateKey),
  pcrs: [hex(vectors.inputs.pcr0), hex(vectors.inputs.pcr1), hex(vectors.inputs.pcr2)] as ImagePcrs,
  sessionId: hex(vectors.inputs.sessionId),
};
const schedule = vectors.keySchedule;
const frame = vectors.frame;

describe('the ABE modules reproduce the vectors', () => {
  it('key schedule', () => {
    const context = createEcdhKeyPair(inputs.contextPrivateKey);
    const enclave = createEcdhKeyPair(inputs.enclavePrivateKey);
    const contextPublicKey = publicKeyOf(context);
    const enclavePublicKey = publicKeyOf(enclave);
    expect(contextPublicKey.toString('hex')).toBe(schedule.contextPublicKey);
    expect(enclavePublicKey.toString('hex')).toBe(schedule.enclavePublicKey);
    const sharedSecret = ecdhSharedSecret(context, enclavePublicKey, 'enclave key');
    expect(sharedSecret.toString('hex')).toBe(schedule.sharedSecret);
    expect(ecdhSharedSecret(enclave, contextPublicKey, 'context key').equals(sharedSecret)).toBe(true);
    expect(pcrSalt(inputs.pcrs).toString('hex')).toBe(schedule.salt);
    expect(sessionInfo(inputs.sessionId, contextPublicKey, enclavePublicKey).toString('hex')).toBe(schedule.info);
    const sessionKey = deriveSessionKey({ sharedSecret, pcrs: inputs.pcrs, sessionId: inputs.sessionId, contextPublicKey, enclavePublicKey });
    expect(sessionKey.toString('hex')).toBe(schedule.sessionKey);
    for (const { n, key } of schedule.operationKeys) {
      expect(deriveOperationKey(sessionKey, n).toString('hex'), `K_${n}`).toBe(key);
    }
  });

  it('frame: sealed as the third chunk of its operation, and opened again', () => {
    const params = { session: inputs.sessionId, n: frame.inputs.n, dir: frame.inputs.dir as Direction, digest: hex(frame.inputs.digest) };
    const sealer = new FrameSealer({ ...params, key: hex(frame.operationKey) });
    sealer.seal(frame.inputs.buffer, Buffer.alloc(0), false);
    sealer.seal(frame.inputs.buffer, Buffer.alloc(0), false);
    const sealed = sealer.seal(frame.inputs.buffer, hex(frame.inputs.plaintext), frame.inputs.last);
    expect(sealed.toString('hex')).toBe(frame.frame);

    const opener = new FrameOpener({ ...params, key: hex(frame.operationKey), window: new ReplayWindow(), backend: nodeCryptoBackend });
    const skipped = new FrameSealer({ ...params, key: hex(frame.operationKey) });
    opener.open(skipped.seal(frame.inputs.buffer, Buffer.alloc(0), false));
    opener.open(skipped.seal(frame.inputs.buffer, Buffer.alloc(0), false));
    expect(opener.open(hex(frame.frame)).plaintext.toString('hex')).toBe(frame.inputs.plaintext);
  });
});

describe('the vectors follow from ABE.md, computed with node:crypto alone', () => {
  const lengthPrefixed = (field: Buffer) => Buffer.concat([Buffer.of(field.length >> 8, field.length & 0xff), field]);
  const operationKey = (sessionKey: Buffer, n: number) => {
    const info = Buffer.alloc(14);
    info.write('launch', 'ascii');
    info.writeBigUInt64BE(BigInt(n), 6);
    // HKDF-Expand, one block: T(1) = HMAC-SHA384(PRK, info || 0x01), first 32 bytes.
    return createHmac('sha384', sessionKey).update(info).update(Buffer.of(1)).digest().subarray(0, 32);
  };

  it('key schedule: ECDH, salt, info, HKDF-SHA384 (hkdfSync), HKDF-Expand (HMAC)', () => {
    const context = createECDH('secp384r1');
    context.setPrivateKey(inputs.contextPrivateKey);
    const enclave = createECDH('secp384r1');
    enclave.setPrivateKey(inputs.enclavePrivateKey);
    const sharedSecret = context.computeSecret(enclave.getPublicKey());
    expect(sharedSecret.toString('hex')).toBe(schedule.sharedSecret);
    const salt = createHash('sha384').update(Buffer.concat(inputs.pcrs)).digest();
    expect(salt.toString('hex')).toBe(schedule.salt);
    const info = Buffer.concat([Buffer.from('egpu-abe-v1 session', 'ascii'), ...[inputs.sessionId, context.getPublicKey(), enclave.getPublicKey()].map(lengthPrefixed)]);
    expect(info.toString('hex')).toBe(schedule.info);
    const sessionKey = Buffer.from(hkdfSync('sha384', sharedSecret, salt, info, 32));
    expect(sessionKey.toString('hex')).toBe(schedule.sessionKey);
    for (const { n, key } of schedule.operationKeys) {
      expect(operationKey(sessionKey, n).toString('hex'), `K_${n}`).toBe(key);
    }
  });

  it('frame: header bytes, nonce, AES-256-GCM, CBOR array and length prefix', () => {
    const text = (s: string) => Buffer.concat([Buffer.of(0x60 | s.length), Buffer.from(s, 'ascii')]);
    const digest = hex(frame.inputs.digest);
    const header = Buffer.concat([
      Buffer.of(0xa8), // map of 8
      text('v'), Buffer.of(0x01),
      text('session'), Buffer.of(0x50), inputs.sessionId,
      text('n'), Buffer.of(frame.inputs.n),
      text('buffer'), Buffer.of(frame.inputs.buffer),
      text('chunk'), Buffer.of(frame.inputs.chunk),
      text('last'), Buffer.of(frame.inputs.last ? 0xf5 : 0xf4),
      text('dir'), Buffer.of(frame.inputs.dir),
      text('digest'), Buffer.of(0x58, 48), digest,
    ]);
    expect(header.toString('hex')).toBe(frame.header);
    const nonce = Buffer.alloc(12);
    nonce[0] = frame.inputs.dir;
    nonce.writeBigUInt64BE(BigInt(frame.inputs.chunk), 4);
    expect(nonce.toString('hex')).toBe(frame.nonce);
    const key = operationKey(Buffer.from(hkdfSync('sha384', hex(schedule.sharedSecret), hex(schedule.salt), hex(schedule.info), 32)), frame.inputs.n);
    expect(key.toString('hex')).toBe(frame.operationKey);
    const cipher = createCipheriv('aes-256-gcm', key, nonce);
    cipher.setAAD(header);
    const ciphertext = Buffer.concat([cipher.update(hex(frame.inputs.plaintext)), cipher.final()]);
    const tag = cipher.getAuthTag();
    expect(ciphertext.toString('hex')).toBe(frame.ciphertext);
    expect(tag.toString('hex')).toBe(frame.tag);
    const bytesHead = (length: number) => (length < 24 ? Buffer.of(0x40 | length) : Buffer.of(0x58, length));
    const body = Buffer.concat([Buffer.of(0x83), bytesHead(header.length), header, bytesHead(ciphertext.length), ciphertext, bytesHead(16), tag]);
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(body.length);
    expect(Buffer.concat([prefix, body]).toString('hex')).toBe(frame.frame);
  });
});
