/**
 * Builds `CiphertextForRecipient` the way KMS does, with @peculiar/asn1-cms: ContentInfo
 * (id-envelopedData) around EnvelopedData version 2 with one KeyTransRecipientInfo
 * (version 2, subjectKeyIdentifier), RSAES-OAEP-SHA-256 for the key, AES-256-CBC for the
 * content. Every deviation a test needs is an option, so each refusal test changes one thing.
 */
import { constants, createCipheriv, createHash, KeyObject, publicEncrypt, randomBytes } from 'node:crypto';
import {
  CMSVersion, ContentEncryptionAlgorithmIdentifier, ContentInfo, EncryptedContent, EncryptedContentInfo, EnvelopedData,
  id_data, id_envelopedData, IssuerAndSerialNumber, KeyEncryptionAlgorithmIdentifier, KeyTransRecipientInfo,
  RecipientIdentifier, RecipientInfo, RecipientInfos,
} from '@peculiar/asn1-cms';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import { Name, SubjectKeyIdentifier } from '@peculiar/asn1-x509';
import * as asn1js from 'asn1js';

export const OIDS = {
  rsaesOaep: '1.2.840.113549.1.1.7',
  aes256Cbc: '2.16.840.1.101.3.4.1.42',
  aes128Cbc: '2.16.840.1.101.3.4.1.2',
  sha256: '608648016503040201',
  sha384: '608648016503040202',
};

/**
 * RSAES-OAEP-params for SHA-256 / MGF1-SHA-256 / empty label, DER, with NULL hash parameters,
 * written out by hand from RFC 4055 (not produced by the code under test):
 * SEQUENCE { [0] { SEQUENCE { sha256, NULL } }, [1] { SEQUENCE { mgf1, SEQUENCE { sha256, NULL } } } }.
 */
export const OAEP_SHA256_PARAMS_HEX =
  '302f' + 'a00f300d0609' + OIDS.sha256 + '0500' + 'a11c301a06092a864886f70d010108300d0609' + OIDS.sha256 + '0500';

export type Encoding = 'der' | 'chunked' | 'indefinite';

export interface EnvelopeSpec {
  /** The public key KMS would take from the attestation document. */
  readonly recipient: KeyObject;
  readonly plaintext: Uint8Array;
  /**
   * - der: definite lengths, content as one primitive [0];
   * - chunked: definite lengths, content as a constructed [0] of OCTET STRING chunks;
   * - indefinite: what KMS sends: indefinite-length ContentInfo, [0], EnvelopedData,
   *   EncryptedContentInfo and content, the content in OCTET STRING chunks.
   */
  readonly encoding?: Encoding;
  readonly chunkBytes?: number;
  readonly recipients?: number;
  readonly recipientVersion?: CMSVersion;
  readonly useIssuerAndSerial?: boolean;
  readonly envelopedDataVersion?: CMSVersion;
  readonly contentType?: string;
  /** DER of the key encryption parameters; null leaves them out. */
  readonly oaepParams?: Buffer | null;
  /** The hash actually used to encrypt the key. */
  readonly oaepHash?: 'sha256' | 'sha1';
  readonly contentAlgorithm?: string;
  readonly contentKey?: Buffer;
  readonly iv?: Buffer;
  /** The IV as written in the algorithm parameters, when it should differ from the one used; null leaves it out. */
  readonly writtenIv?: Buffer | null;
}

/** The envelope's bytes and the parts a test may want to find or flip in them. */
export interface Envelope {
  readonly bytes: Buffer;
  readonly encryptedKey: Buffer;
  readonly iv: Buffer;
  readonly ciphertext: Buffer;
}

export function buildCiphertextForRecipient(spec: EnvelopeSpec): Envelope {
  const contentKey = spec.contentKey ?? randomBytes(32);
  const iv = spec.iv ?? randomBytes(16);
  const cipher = createCipheriv(`aes-${contentKey.length * 8}-cbc`, contentKey, iv);
  const ciphertext = Buffer.concat([cipher.update(spec.plaintext), cipher.final()]);
  const encryptedKey = publicEncrypt(
    { key: spec.recipient, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: spec.oaepHash ?? 'sha256' },
    contentKey,
  );
  const recipientInfo = new RecipientInfo({ ktri: keyTransRecipient(spec, encryptedKey) });
  const chunks = split(ciphertext, spec.chunkBytes ?? 16);
  const encryptedContentInfo = new EncryptedContentInfo({
    contentType: id_data,
    contentEncryptionAlgorithm: new ContentEncryptionAlgorithmIdentifier({
      algorithm: spec.contentAlgorithm ?? OIDS.aes256Cbc,
      ...(spec.writtenIv === null ? {} : { parameters: AsnConvert.serialize(new OctetString(spec.writtenIv ?? iv)) }),
    }),
    encryptedContent: new EncryptedContent(spec.encoding === 'chunked'
      ? { constructedValue: chunks.map((chunk) => new OctetString(chunk)) }
      : { value: new OctetString(ciphertext) }),
  });
  const envelopedData = new EnvelopedData({
    version: spec.envelopedDataVersion ?? CMSVersion.v2,
    recipientInfos: new RecipientInfos(Array.from({ length: spec.recipients ?? 1 }, () => recipientInfo)),
    encryptedContentInfo,
  });
  const contentType = spec.contentType ?? id_envelopedData;
  const bytes = spec.encoding === 'indefinite'
    ? indefiniteLength(contentType, envelopedData, chunks)
    : Buffer.from(AsnConvert.serialize(new ContentInfo({ contentType, content: AsnConvert.serialize(envelopedData) })));
  return { bytes, encryptedKey, iv, ciphertext };
}

function keyTransRecipient(spec: EnvelopeSpec, encryptedKey: Buffer): KeyTransRecipientInfo {
  const spki = spec.recipient.export({ type: 'spki', format: 'der' });
  const rid = spec.useIssuerAndSerial
    ? new RecipientIdentifier({ issuerAndSerialNumber: new IssuerAndSerialNumber({ issuer: new Name(), serialNumber: new Uint8Array([1]).buffer }) })
    : new RecipientIdentifier({ subjectKeyIdentifier: new SubjectKeyIdentifier(createHash('sha1').update(spki).digest()) });
  const params = spec.oaepParams === undefined ? Buffer.from(OAEP_SHA256_PARAMS_HEX, 'hex') : spec.oaepParams;
  return new KeyTransRecipientInfo({
    version: spec.recipientVersion ?? (spec.useIssuerAndSerial ? CMSVersion.v0 : CMSVersion.v2),
    rid,
    keyEncryptionAlgorithm: new KeyEncryptionAlgorithmIdentifier({
      algorithm: OIDS.rsaesOaep,
      ...(params === null ? {} : { parameters: new Uint8Array(params).buffer }),
    }),
    encryptedKey: new OctetString(encryptedKey),
  });
}

/**
 * The BER KMS sends, assembled explicitly with asn1js: the outer layers and the content in
 * indefinite-length form; the recipient set and algorithm identifiers as the library encodes them.
 */
function indefiniteLength(contentType: string, envelopedData: EnvelopedData, chunks: Buffer[]): Buffer {
  const indefinite = { isIndefiniteForm: true };
  const fromLibrary = (value: unknown) => asn1js.fromBER(AsnConvert.serialize(value), { parseEmbedded: false }).result;
  const info = envelopedData.encryptedContentInfo;
  const encryptedContentInfo = new asn1js.Sequence({
    lenBlock: indefinite,
    value: [
      new asn1js.ObjectIdentifier({ value: info.contentType }),
      fromLibrary(info.contentEncryptionAlgorithm),
      new asn1js.Constructed({
        idBlock: { tagClass: 3, tagNumber: 0 },
        lenBlock: indefinite,
        value: chunks.map((chunk) => new asn1js.OctetString({ valueHex: chunk })),
      }),
    ],
  });
  const enveloped = new asn1js.Sequence({
    lenBlock: indefinite,
    value: [new asn1js.Integer({ value: envelopedData.version }), fromLibrary(envelopedData.recipientInfos), encryptedContentInfo],
  });
  const contentInfo = new asn1js.Sequence({
    lenBlock: indefinite,
    value: [
      new asn1js.ObjectIdentifier({ value: contentType }),
      new asn1js.Constructed({ idBlock: { tagClass: 3, tagNumber: 0 }, lenBlock: indefinite, value: [enveloped] }),
    ],
  });
  return Buffer.from(contentInfo.toBER());
}

function split(bytes: Buffer, size: number): Buffer[] {
  const chunks: Buffer[] = [];
  for (let offset = 0; offset < bytes.length; offset += size) chunks.push(bytes.subarray(offset, offset + size));
  return chunks;
}
