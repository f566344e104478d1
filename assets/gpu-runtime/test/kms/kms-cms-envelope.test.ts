import { generateKeyPairSync, KeyObject, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CMSVersion, id_signedData } from '@peculiar/asn1-cms';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import { AlgorithmIdentifier } from '@peculiar/asn1-x509';
import * as asn1js from 'asn1js';
import { beforeAll, describe, expect, it } from 'vitest';
import { RuntimeError } from '../../src/errors';
import { MAX_CMS_BYTES, unwrapCiphertextForRecipient } from '../../src/kms/cms-envelope';
import { importRecipientPrivateKey } from '../../src/kms/enclave-keypair';
import { OID, RsaesOaepParams } from '../../src/kms/rsaes-oaep-params';
import { buildCiphertextForRecipient, Encoding, EnvelopeSpec, OAEP_SHA256_PARAMS_HEX, OIDS } from './cms-fixtures';
import { watchPlaintextCopies } from './plaintext-copies';

const VECTORS = join(__dirname, 'vectors');
const ENCODINGS: Encoding[] = ['der', 'chunked', 'indefinite'];

let privateKey: KeyObject;
let publicKey: KeyObject;
const dataKey = randomBytes(32);

beforeAll(() => {
  ({ privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 }));
});

function envelope(changes: Partial<EnvelopeSpec> = {}): Buffer {
  return buildCiphertextForRecipient({ recipient: publicKey, plaintext: dataKey, encoding: 'indefinite', ...changes }).bytes;
}

/** asn1js's view of an element, enough to walk and edit the tree. */
type Node = { valueBlock: { value: Node[] }; toBER(): ArrayBuffer };

/** The element at `path` (indexes of elements, level by level) below `node`. */
function at(node: Node, ...path: number[]): Node {
  return path.reduce((parent, index) => parent.valueBlock.value[index], node);
}

/** The structures of an envelope's tree that tests edit. */
interface Parts { contentInfo: Node; envelopedData: Node; recipient: Node; content: Node }

/**
 * An envelope of `dataKey` for this key, re-encoded after `change` edited its tree; `change`
 * gets ContentInfo, its EnvelopedData, KeyTransRecipientInfo and EncryptedContentInfo.
 */
function edited(change: (parts: Parts) => void, encoding: Encoding = 'der'): Buffer {
  const contentInfo = asn1js.fromBER(envelope({ encoding }), { parseEmbedded: false }).result as unknown as Node;
  const envelopedData = at(contentInfo, 1, 0);
  change({ contentInfo, envelopedData, recipient: at(envelopedData, 1, 0), content: at(envelopedData, 2) });
  return Buffer.from(contentInfo.toBER());
}

/** The error `unwrap` throws, so its code and reason can be checked. */
function refusal(bytes: Uint8Array, key: KeyObject = privateKey): RuntimeError {
  try {
    unwrapCiphertextForRecipient(bytes, key);
  } catch (error) {
    if (error instanceof RuntimeError) return error;
    throw error;
  }
  throw new Error('expected the envelope to be refused');
}

describe('unwrapCiphertextForRecipient: the KMS profile', () => {
  it.each(ENCODINGS)('unwraps a data key from the %s encoding', (encoding) => {
    const bytes = envelope({ encoding });
    expect(unwrapCiphertextForRecipient(bytes, privateKey)).toEqual(dataKey);
  });

  it('really exercises BER: the indefinite encoding has indefinite lengths and a chunked [0] content', () => {
    const bytes = envelope({ encoding: 'indefinite', chunkBytes: 16 });
    expect(bytes.subarray(0, 2).toString('hex')).toBe('3080');
    // [0] constructed, indefinite, then the first 16-byte OCTET STRING chunk
    expect(bytes.toString('hex')).toContain('a0800410');
    expect(bytes.subarray(-4).toString('hex')).toBe('00000000');
  });

  it.each([1, 7, 16, 48])('joins content split into %i-byte chunks', (chunkBytes) => {
    for (const encoding of ['chunked', 'indefinite'] as const) {
      expect(unwrapCiphertextForRecipient(envelope({ encoding, chunkBytes }), privateKey)).toEqual(dataKey);
    }
  });

  it.each([0, 1, 15, 16, 4096])('returns any plaintext KMS Decrypt can return (%i bytes)', (length) => {
    const plaintext = randomBytes(length);
    const bytes = buildCiphertextForRecipient({ recipient: publicKey, plaintext, encoding: 'indefinite', chunkBytes: 1000 }).bytes;
    expect(unwrapCiphertextForRecipient(bytes, privateKey)).toEqual(plaintext);
  });

  it('accepts SHA-256 identifiers with absent parameters too (RFC 4055 allows both)', () => {
    const absent = Buffer.from(AsnConvert.serialize(new RsaesOaepParams({
      hashAlgorithm: new AlgorithmIdentifier({ algorithm: OID.sha256 }),
      maskGenAlgorithm: new AlgorithmIdentifier({ algorithm: OID.mgf1, parameters: AsnConvert.serialize(new AlgorithmIdentifier({ algorithm: OID.sha256 })) }),
    })));
    expect(unwrapCiphertextForRecipient(envelope({ oaepParams: absent }), privateKey)).toEqual(dataKey);
  });

  it('accepts an explicit empty label (pSpecified with an empty OCTET STRING)', () => {
    const params = AsnConvert.parse(Buffer.from(OAEP_SHA256_PARAMS_HEX, 'hex'), RsaesOaepParams);
    params.pSourceAlgorithm = new AlgorithmIdentifier({ algorithm: OID.pSpecified, parameters: AsnConvert.serialize(new OctetString(0)) });
    expect(unwrapCiphertextForRecipient(envelope({ oaepParams: Buffer.from(AsnConvert.serialize(params)) }), privateKey)).toEqual(dataKey);
  });
});

describe('unwrapCiphertextForRecipient: no copy of the plaintext is left behind', () => {
  it.each([32, 100])('once the caller zeroes the %i-byte result, no other buffer holds the plaintext', (length) => {
    const plaintext = randomBytes(length);
    const envelopes = ENCODINGS.map((encoding) => buildCiphertextForRecipient({ recipient: publicKey, plaintext, encoding }).bytes);
    for (const bytes of envelopes) {
      const watch = watchPlaintextCopies();
      try {
        const result = unwrapCiphertextForRecipient(bytes, privateKey);
        expect(result).toEqual(plaintext);
        expect(watch.holding(plaintext)).toBeGreaterThan(0);
        result.fill(0);
        expect(watch.holding(plaintext)).toBe(0);
      } finally {
        watch.restore();
      }
    }
  });

  it('content that fails to decrypt (bad padding) leaves no plaintext behind', () => {
    const built = buildCiphertextForRecipient({ recipient: publicKey, plaintext: dataKey, encoding: 'der' });
    // The last byte of the second block: the first block, half the key, still decrypts intact.
    const flippedPadding = Buffer.from(built.bytes);
    flippedPadding[built.bytes.indexOf(built.ciphertext) + 31] ^= 0x01;
    const watch = watchPlaintextCopies();
    try {
      expect(refusal(flippedPadding).code).toBe('CMS_DECRYPT');
      expect(watch.seen).toBeGreaterThan(0);
      expect(watch.holding(dataKey)).toBe(0);
    } finally {
      watch.restore();
    }
  });
});

describe('unwrapCiphertextForRecipient: OpenSSL-made envelopes (an independent implementation)', () => {
  const key = importRecipientPrivateKey(readFileSync(join(VECTORS, 'openssl-recipient-key.pem')));
  const plaintext = Buffer.from(readFileSync(join(VECTORS, 'openssl-plaintext.hex'), 'latin1').trim(), 'hex');

  it.each(['openssl-enveloped-stream.ber', 'openssl-enveloped.der'])('unwraps %s', (file) => {
    expect(unwrapCiphertextForRecipient(readFileSync(join(VECTORS, file)), key)).toEqual(plaintext);
  });

  it('the RSAES-OAEP-params schema encodes exactly what OpenSSL wrote', () => {
    const openssl = readFileSync(join(VECTORS, 'openssl-enveloped-stream.ber')).subarray(66, 66 + 45);
    const params = new RsaesOaepParams({
      hashAlgorithm: new AlgorithmIdentifier({ algorithm: OID.sha256 }),
      maskGenAlgorithm: new AlgorithmIdentifier({ algorithm: OID.mgf1, parameters: AsnConvert.serialize(new AlgorithmIdentifier({ algorithm: OID.sha256 })) }),
    });
    expect(Buffer.from(AsnConvert.serialize(params))).toEqual(openssl);
  });
});

describe('unwrapCiphertextForRecipient: refusals', () => {
  it('refuses two recipients', () => {
    const error = refusal(envelope({ recipients: 2 }));
    expect(error.code).toBe('CMS_UNSUPPORTED');
    expect(error.reason).toContain('2 recipients');
  });

  it('refuses a recipient identified by issuer and serial number (version 0)', () => {
    expect(refusal(envelope({ useIssuerAndSerial: true, envelopedDataVersion: CMSVersion.v0 })).code).toBe('CMS_UNSUPPORTED');
    expect(refusal(envelope({ useIssuerAndSerial: true })).code).toBe('CMS_UNSUPPORTED');
  });

  it('refuses a content type other than id-envelopedData', () => {
    expect(refusal(envelope({ contentType: id_signedData })).reason).toContain('not id-envelopedData');
  });

  it.each([
    ['OAEP hash SHA-384', OAEP_SHA256_PARAMS_HEX.replace(OIDS.sha256, OIDS.sha384), 'RSAES-OAEP hash is 2.16.840.1.101.3.4.2.2'],
    ['MGF1 hash SHA-384', OAEP_SHA256_PARAMS_HEX.slice(0, 40) + OAEP_SHA256_PARAMS_HEX.slice(40).replace(OIDS.sha256, OIDS.sha384), 'MGF1 hash is 2.16.840.1.101.3.4.2.2'],
    ['hash left to its SHA-1 default', '301e' + OAEP_SHA256_PARAMS_HEX.slice(38), 'SHA-1 (the default)'],
    ['MGF left to its MGF1-SHA-1 default', '3011' + OAEP_SHA256_PARAMS_HEX.slice(4, 38), 'MGF1 with SHA-1 (the default)'],
  ])('refuses %s', (_, paramsHex, reason) => {
    const error = refusal(envelope({ oaepParams: Buffer.from(paramsHex, 'hex') }));
    expect(error.code).toBe('CMS_UNSUPPORTED');
    expect(error.reason).toContain(reason);
  });

  it('refuses RSAES-OAEP without parameters (SHA-1), even when the key was encrypted that way', () => {
    expect(refusal(envelope({ oaepParams: null, oaepHash: 'sha1' })).reason).toContain('without parameters means SHA-1');
  });

  it('refuses a non-empty OAEP label', () => {
    const params = AsnConvert.parse(Buffer.from(OAEP_SHA256_PARAMS_HEX, 'hex'), RsaesOaepParams);
    params.pSourceAlgorithm = new AlgorithmIdentifier({ algorithm: OID.pSpecified, parameters: AsnConvert.serialize(new OctetString([1])) });
    expect(refusal(envelope({ oaepParams: Buffer.from(AsnConvert.serialize(params)) })).reason).toContain('label is not empty');
  });

  it('refuses a content encryption algorithm other than AES-256-CBC', () => {
    const error = refusal(envelope({ contentAlgorithm: OIDS.aes128Cbc, contentKey: randomBytes(16) }));
    expect(error.code).toBe('CMS_UNSUPPORTED');
    expect(error.reason).toContain('not AES-256-CBC');
  });

  it('refuses a content-encryption key that is not 256 bits', () => {
    expect(refusal(envelope({ contentKey: randomBytes(16) })).code).toBe('CMS_MALFORMED');
  });

  it('refuses an IV that is not one block, or missing', () => {
    expect(refusal(envelope({ writtenIv: randomBytes(8) })).reason).toContain('IV is 8 bytes');
    expect(refusal(envelope({ writtenIv: null })).reason).toContain('the IV) are missing');
  });

  it('refuses the wrong private key (CMS_DECRYPT), and keys that are not RSA-2048 (KMS_RECIPIENT)', () => {
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    const error = refusal(envelope(), other);
    expect(error.code).toBe('CMS_DECRYPT');
    expect(error.reason).toContain('attestation document');
    expect(refusal(envelope(), generateKeyPairSync('rsa', { modulusLength: 3072 }).privateKey).code).toBe('KMS_RECIPIENT');
    expect(refusal(envelope(), generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey).code).toBe('KMS_RECIPIENT');
    expect(refusal(envelope(), publicKey).code).toBe('KMS_RECIPIENT');
  });

  it.each(['der', 'indefinite'] as const)('refuses every truncation of the %s encoding as CMS_MALFORMED', (encoding) => {
    const bytes = envelope({ encoding });
    for (let length = 0; length < bytes.length; length++) {
      expect(refusal(bytes.subarray(0, length)).code, `truncated to ${length} bytes`).toBe('CMS_MALFORMED');
    }
  });

  it('refuses bytes after the envelope, and envelopes larger than the limit', () => {
    expect(refusal(Buffer.concat([envelope(), Buffer.of(0)])).reason).toContain('1 unexpected bytes');
    expect(refusal(Buffer.alloc(MAX_CMS_BYTES + 1)).code).toBe('CMS_MALFORMED');
  });

  it('refuses deeply nested BER within the limits instead of recursing', () => {
    const depth = 1000;
    const bomb = Buffer.concat([Buffer.alloc(depth * 2, Buffer.from('3080', 'hex')), Buffer.alloc(depth * 2)]);
    expect(refusal(bomb).reason).toContain('depth');
  });

  it.each([
    ['a UTF8String', () => new asn1js.Utf8String({ value: 'x' })],
    ['an empty UTF8String', () => new asn1js.Utf8String({ value: '' })],
    ['a PrintableString', () => new asn1js.PrintableString({ value: 'x' })],
    ['an IA5String', () => new asn1js.IA5String({ value: 'x' })],
  ])('refuses a content chunk that is %s, not an OCTET STRING', (_, chunk) => {
    for (const encoding of ['chunked', 'indefinite'] as const) {
      // The edited tree re-encodes to an envelope that unwraps, also with a constructed OCTET
      // STRING among the chunks (BER allows nesting them): only the wrong chunk is refused.
      expect(unwrapCiphertextForRecipient(edited(() => {}, encoding), privateKey)).toEqual(dataKey);
      const nested = edited(({ content }) => {
        const chunks = at(content, 2).valueBlock.value;
        chunks.splice(0, 2, new asn1js.OctetString({ value: chunks.slice(0, 2) as never[], idBlock: { isConstructed: true } }) as unknown as Node);
      }, encoding);
      expect(unwrapCiphertextForRecipient(nested, privateKey)).toEqual(dataKey);
      const bytes = edited(({ content }) => at(content, 2).valueBlock.value.splice(1, 0, chunk() as unknown as Node), encoding);
      const error = refusal(bytes);
      expect(error.code).toBe('CMS_MALFORMED');
      expect(error.reason).toContain('not an OCTET STRING');
    }
  });

  const integer = () => [new asn1js.Integer({ value: 7 })];
  // EnvelopedData's schema refuses anything after it but unprotectedAttrs [1]: two of those.
  const unprotectedAttrs = () => new asn1js.Constructed({
    idBlock: { tagClass: 3, tagNumber: 1 },
    value: [new asn1js.Sequence({ value: [new asn1js.ObjectIdentifier({ value: '1.2.3.4' }), new asn1js.Set({ value: [new asn1js.Null()] })] })],
  });
  it.each([
    ['ContentInfo', (p: Parts) => p.contentInfo, integer],
    ["ContentInfo's [0]", (p: Parts) => at(p.contentInfo, 1), integer],
    ['EnvelopedData (a second unprotectedAttrs [1])', (p: Parts) => p.envelopedData, () => [unprotectedAttrs(), unprotectedAttrs()]],
    ['KeyTransRecipientInfo', (p: Parts) => p.recipient, integer],
    ['the key encryption AlgorithmIdentifier', (p: Parts) => at(p.recipient, 2), integer],
    ['the RSAES-OAEP hash AlgorithmIdentifier', (p: Parts) => at(p.recipient, 2, 1, 0, 0), integer],
    ["RSAES-OAEP-params' [0]", (p: Parts) => at(p.recipient, 2, 1, 0), integer],
    ['the RSAES-OAEP mask generation AlgorithmIdentifier', (p: Parts) => at(p.recipient, 2, 1, 1, 0), integer],
    ['the MGF1 hash AlgorithmIdentifier', (p: Parts) => at(p.recipient, 2, 1, 1, 0, 1), integer],
    ['EncryptedContentInfo', (p: Parts) => p.content, integer],
    ['the AES-256-CBC AlgorithmIdentifier', (p: Parts) => at(p.content, 1), integer],
  ])('refuses an extra element at the end of %s', (_, parent, extra) => {
    expect(unwrapCiphertextForRecipient(edited(() => {}), privateKey)).toEqual(dataKey);
    const bytes = edited((parts) => parent(parts).valueBlock.value.push(...(extra() as unknown as Node[])));
    const error = refusal(bytes);
    expect(error.code).toBe('CMS_MALFORMED');
    expect(error.reason).toMatch(/ has \d+ elements/);
  });

  it('refuses a constructed OCTET STRING for the OAEP label or the IV (KMS writes both primitive)', () => {
    const params = AsnConvert.parse(Buffer.from(OAEP_SHA256_PARAMS_HEX, 'hex'), RsaesOaepParams);
    const oneByte = new asn1js.OctetString({ idBlock: { isConstructed: true }, value: [new asn1js.OctetString({ valueHex: Buffer.of(1) })] } as never);
    params.pSourceAlgorithm = new AlgorithmIdentifier({ algorithm: OID.pSpecified, parameters: oneByte.toBER() });
    const label = refusal(envelope({ oaepParams: Buffer.from(AsnConvert.serialize(params)) }));
    expect(label.code).toBe('CMS_MALFORMED');
    expect(label.reason).toContain('RSAES-OAEP label is a constructed OCTET STRING');
    const iv = refusal(edited(({ content }) => {
      const written = (at(content, 1, 1) as unknown as asn1js.OctetString).valueBlock.valueHexView;
      const halves = [written.subarray(0, 8), written.subarray(8)].map((half) => new asn1js.OctetString({ valueHex: half }));
      at(content, 1).valueBlock.value[1] = new asn1js.OctetString({ idBlock: { isConstructed: true }, value: halves } as never) as unknown as Node;
    }));
    expect(iv.code).toBe('CMS_MALFORMED');
    expect(iv.reason).toContain('AES-256-CBC IV is a constructed OCTET STRING');
  });

  it('refuses a flipped bit in the encrypted key (CMS_DECRYPT) or in the padding block (CMS_DECRYPT)', () => {
    const built = buildCiphertextForRecipient({ recipient: publicKey, plaintext: dataKey, encoding: 'der' });
    const keyAt = built.bytes.indexOf(built.encryptedKey);
    const flippedKey = Buffer.from(built.bytes);
    flippedKey[keyAt + 100] ^= 0x01;
    expect(refusal(flippedKey).code).toBe('CMS_DECRYPT');
    // 32 bytes of plaintext end in a full padding block of 0x10; flipping the last byte of the
    // block before it makes that 0x11, which no valid padding has.
    const contentAt = built.bytes.indexOf(built.ciphertext);
    const flippedPadding = Buffer.from(built.bytes);
    flippedPadding[contentAt + 31] ^= 0x01;
    expect(refusal(flippedPadding).code).toBe('CMS_DECRYPT');
  });

  it('a key that does not decrypt and content that does not (bad padding) fail identically', () => {
    const built = buildCiphertextForRecipient({ recipient: publicKey, plaintext: dataKey, encoding: 'der' });
    const flippedKey = Buffer.from(built.bytes);
    flippedKey[built.bytes.indexOf(built.encryptedKey) + 100] ^= 0x01;
    const flippedPadding = Buffer.from(built.bytes);
    flippedPadding[built.bytes.indexOf(built.ciphertext) + 31] ^= 0x01;
    // Both from one call site, so even the stacks can be compared.
    const [oaep, padding] = [flippedKey, flippedPadding].map((bytes) => refusal(bytes));
    const seen = (error: RuntimeError) => [error.constructor, error.name, error.code, error.reason, error.message, error.stack];
    expect(oaep.code).toBe('CMS_DECRYPT');
    expect(seen(padding)).toEqual(seen(oaep));
  });

  it('CBC has no integrity: a flipped bit in the first content block changes the plaintext undetected (TLS to KMS is what protects it)', () => {
    const built = buildCiphertextForRecipient({ recipient: publicKey, plaintext: dataKey, encoding: 'der' });
    const flipped = Buffer.from(built.bytes);
    flipped[built.bytes.indexOf(built.ciphertext)] ^= 0x01;
    const plaintext = unwrapCiphertextForRecipient(flipped, privateKey);
    // The first block decrypts to noise; the same bit flips in the second, as an attacker chose.
    const secondBlock = Buffer.from(dataKey.subarray(16));
    secondBlock[0] ^= 0x01;
    expect(plaintext.subarray(0, 16)).not.toEqual(dataKey.subarray(0, 16));
    expect(plaintext.subarray(16)).toEqual(secondBlock);
  });

  it.each(['der', 'indefinite'] as const)('never fails with anything but a typed error, whichever bit of the %s encoding flips', (encoding) => {
    const bytes = envelope({ encoding });
    const codes = new Set<string>();
    for (let offset = 0; offset < bytes.length; offset++) {
      const flipped = Buffer.from(bytes);
      flipped[offset] ^= 1 << (offset % 8);
      try {
        unwrapCiphertextForRecipient(flipped, privateKey);
        codes.add('accepted');
      } catch (error) {
        expect(error, `bit flipped at offset ${offset}`).toBeInstanceOf(RuntimeError);
        codes.add((error as RuntimeError).code);
      }
    }
    expect([...codes].sort()).toEqual(expect.arrayContaining(['CMS_DECRYPT', 'CMS_MALFORMED', 'CMS_UNSUPPORTED']));
  });
});
