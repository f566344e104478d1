import { createECDH, createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ImagePcrs, checkP384PublicKey, createEcdhKeyPair, deriveOperationKey, deriveSessionKey, ecdhSharedSecret, hkdfExpand, publicKeyOf, sessionInfo } from '../../src/abe/key-schedule';
import { refusal } from './helpers';

const pcrs = (): ImagePcrs => [randomBytes(48), randomBytes(48), randomBytes(48)];

function inputs() {
  const context = createEcdhKeyPair();
  const enclave = createEcdhKeyPair();
  return {
    sharedSecret: ecdhSharedSecret(context, publicKeyOf(enclave), 'enclave key'),
    pcrs: pcrs(),
    sessionId: randomBytes(16),
    contextPublicKey: publicKeyOf(context),
    enclavePublicKey: publicKeyOf(enclave),
  };
}

describe('the session key', () => {
  it('changes with every input: another image, session or key gives another key', () => {
    const base = inputs();
    const key = deriveSessionKey(base).toString('hex');
    const [pcr0, pcr1, pcr2] = base.pcrs;
    const variants = [
      { ...base, pcrs: [flip(pcr0), pcr1, pcr2] as ImagePcrs },
      { ...base, pcrs: [pcr0, pcr1, flip(pcr2)] as ImagePcrs },
      { ...base, sessionId: flip(base.sessionId) },
      { ...base, sharedSecret: flip(base.sharedSecret) },
      { ...base, contextPublicKey: base.enclavePublicKey, enclavePublicKey: base.contextPublicKey },
    ];
    for (const variant of variants) {
      expect(deriveSessionKey(variant).toString('hex')).not.toBe(key);
    }
  });

  it('encodes the info fields length-prefixed after the label', () => {
    const { sessionId, contextPublicKey, enclavePublicKey } = inputs();
    const info = sessionInfo(sessionId, contextPublicKey, enclavePublicKey);
    expect(info.subarray(0, 19).toString('ascii')).toBe('egpu-abe-v1 session');
    expect(info.readUInt16BE(19)).toBe(16);
    expect(info.readUInt16BE(19 + 2 + 16)).toBe(97);
    expect(info.length).toBe(19 + 3 * 2 + 16 + 2 * 97);
  });

  it('refuses PCRs that are not 48 bytes', () => {
    const base = inputs();
    expect(refusal(() => deriveSessionKey({ ...base, pcrs: [base.pcrs[0], Buffer.alloc(32), base.pcrs[2]] }), 'INVALID_PCR')).toMatch(/PCR1 must be 48 bytes/);
  });
});

describe('operation keys', () => {
  it('differ for every n and are 32 bytes', () => {
    const sessionKey = randomBytes(32);
    const keys = new Set([0, 1, 2, 255, 256, 2 ** 32, Number.MAX_SAFE_INTEGER].map((n) => deriveOperationKey(sessionKey, n).toString('hex')));
    expect(keys.size).toBe(7);
    expect(deriveOperationKey(sessionKey, 1).length).toBe(32);
  });

  it('refuses a counter beyond 2^53 - 1 (TOO_LARGE, as ABE.md\'s Limits) and one that is negative or fractional (INVALID_ARGUMENT)', () => {
    for (const n of [2 ** 53, 2 ** 64, Infinity]) refusal(() => deriveOperationKey(randomBytes(32), n), 'TOO_LARGE');
    for (const n of [-1, 1.5, NaN]) refusal(() => deriveOperationKey(randomBytes(32), n), 'INVALID_ARGUMENT');
  });
});

describe('HKDF-Expand', () => {
  it("chains blocks as RFC 5869 says: T(i) = HMAC(PRK, T(i-1) || info || i)", () => {
    const prk = randomBytes(48);
    const info = Buffer.from('info');
    const okm = hkdfExpand(prk, info, 100);
    const t1 = createHmac('sha384', prk).update(info).update(Buffer.of(1)).digest();
    const t2 = createHmac('sha384', prk).update(t1).update(info).update(Buffer.of(2)).digest();
    const t3 = createHmac('sha384', prk).update(t2).update(info).update(Buffer.of(3)).digest();
    expect(okm.equals(Buffer.concat([t1, t2, t3]).subarray(0, 100))).toBe(true);
  });

  it('refuses lengths outside 1..255 blocks', () => {
    refusal(() => hkdfExpand(randomBytes(48), Buffer.alloc(0), 0), 'INVALID_ARGUMENT');
    refusal(() => hkdfExpand(randomBytes(48), Buffer.alloc(0), 255 * 48 + 1), 'INVALID_ARGUMENT');
  });
});

describe('ECDH public keys', () => {
  it('accepts an uncompressed P-384 point', () => {
    expect(() => checkP384PublicKey(publicKeyOf(createEcdhKeyPair()), 'key')).not.toThrow();
  });

  it('refuses compressed points, other curves, wrong lengths and points off the curve', () => {
    const ecdh = createEcdhKeyPair();
    const offCurve = publicKeyOf(ecdh);
    offCurve[96] ^= 0x01;
    const cases = [
      ecdh.getPublicKey(undefined, 'compressed'),
      createECDH('prime256v1').generateKeys(),
      Buffer.concat([publicKeyOf(ecdh), Buffer.of(0)]),
      Buffer.alloc(97),
      offCurve,
    ];
    for (const key of cases) refusal(() => checkP384PublicKey(key, 'key'), 'INVALID_PUBLIC_KEY');
    refusal(() => ecdhSharedSecret(ecdh, offCurve, 'peer key'), 'INVALID_PUBLIC_KEY');
  });
});

function flip(bytes: Buffer): Buffer {
  const copy = Buffer.from(bytes);
  copy[0] ^= 0x01;
  return copy;
}
