/**
 * Unwraps KMS's `CiphertextForRecipient`: a BER-encoded CMS ContentInfo holding EnvelopedData
 * (RFC 5652 section 6) with one KeyTransRecipientInfo whose key is encrypted with RSAES-OAEP
 * (SHA-256, MGF1-SHA-256, empty label) to the enclave's public key, and content encrypted
 * with AES-256-CBC.
 *
 * AES-CBC carries no integrity check: what makes the result trustworthy is the TLS session
 * to KMS, which ends inside the enclave. Never unwrap input an untrusted party could have
 * changed and then report the outcome back to it (that is a padding oracle).
 */
import { constants, createDecipheriv, KeyObject, privateDecrypt } from 'node:crypto';
import {
  CMSVersion, ContentInfo, EncryptedContentInfo, EnvelopedData, id_data, id_envelopedData, KeyTransRecipientInfo,
} from '@peculiar/asn1-cms';
import { AsnParser, OctetString } from '@peculiar/asn1-schema';
import { AlgorithmIdentifier } from '@peculiar/asn1-x509';
import * as asn1js from 'asn1js';
import { assertEnclavePrivateKey, ENCLAVE_RSA_BITS } from './enclave-keypair';
import { CmsError } from './errors';
import { OID, RsaesOaepParams } from './rsaes-oaep-params';

/** KMS returns at most 4096 bytes of plaintext (Decrypt's limit). */
export const MAX_RECIPIENT_PLAINTEXT_BYTES = 4096;

/**
 * Largest `CiphertextForRecipient` accepted: the envelope around 4096 bytes for an RSA-2048
 * recipient is under 5 KiB even in small chunks; anything far larger is not from KMS.
 */
export const MAX_CMS_BYTES = 16 * 1024;

const AES_BLOCK_BYTES = 16;
const AES_256_KEY_BYTES = 32;
const RSA_CIPHERTEXT_BYTES = ENCLAVE_RSA_BITS / 8;
const MAX_ENCRYPTED_CONTENT_BYTES = MAX_RECIPIENT_PLAINTEXT_BYTES + AES_BLOCK_BYTES;

/**
 * Parser limits: the KMS structure is 11 levels deep and has a few dozen nodes plus one per
 * content chunk. `parseEmbedded: false` stops asn1js from trying to read the encrypted key and
 * content (random bytes) as nested BER, which would waste work and count against the limits.
 */
const BER_OPTIONS: asn1js.FromBerOptions = { maxDepth: 16, maxNodes: 1024, maxContentLength: MAX_CMS_BYTES, parseEmbedded: false };

/**
 * The one refusal for a content-encryption key that does not decrypt (OAEP) and for content
 * that does not (CBC padding), thrown from one place: no caller can tell the two apart.
 */
const DOES_NOT_DECRYPT = 'the envelope does not decrypt with this private key: it was made for another key (is this the key whose public half is in the attestation document?) or is corrupted';

/**
 * Decrypts `CiphertextForRecipient` with the enclave's RSA-2048 private key and returns the
 * plaintext KMS put in it (a data key, or what Decrypt decrypted). Throws a {@link CmsError}
 * for anything outside the profile, and a `KmsError` (`KMS_RECIPIENT`) for a wrong kind of key.
 */
export function unwrapCiphertextForRecipient(ciphertextForRecipient: Uint8Array, privateKey: KeyObject): Buffer {
  assertEnclavePrivateKey(privateKey);
  if (ciphertextForRecipient.byteLength === 0 || ciphertextForRecipient.byteLength > MAX_CMS_BYTES) {
    throw new CmsError('CMS_MALFORMED', `CiphertextForRecipient is ${ciphertextForRecipient.byteLength} bytes; expected 1 to ${MAX_CMS_BYTES}`);
  }
  const envelopedData = parseEnvelopedData(ciphertextForRecipient);
  const recipient = onlyRecipient(envelopedData);
  const { iv, ciphertext } = encryptedContent(envelopedData.encryptedContentInfo);
  const contentKey = decryptContentKey(recipient, privateKey);
  let plaintext: Buffer | undefined;
  try {
    plaintext = contentKey && decryptContent(contentKey, iv, ciphertext);
  } finally {
    contentKey?.fill(0);
  }
  if (!plaintext) {
    throw new CmsError('CMS_DECRYPT', DOES_NOT_DECRYPT);
  }
  return plaintext;
}

function parseEnvelopedData(ber: Uint8Array): EnvelopedData {
  const contentInfo = parseStrict(ber, ContentInfo, 'ContentInfo', contentInfoShape);
  if (contentInfo.contentType !== id_envelopedData) {
    throw new CmsError('CMS_UNSUPPORTED', `content type is ${contentInfo.contentType}, not id-envelopedData`);
  }
  const envelopedData = parseStrict(new Uint8Array(contentInfo.content), EnvelopedData, 'EnvelopedData', envelopedDataShape);
  // KMS identifies its recipient by subjectKeyIdentifier, which makes the version 2 (RFC 5652
  // section 6.1). originatorInfo and unprotectedAttrs play no part in decryption and are ignored.
  if (envelopedData.version !== CMSVersion.v2) {
    throw new CmsError('CMS_UNSUPPORTED', `EnvelopedData version is ${envelopedData.version}; KMS uses 2`);
  }
  return envelopedData;
}

function onlyRecipient(envelopedData: EnvelopedData): KeyTransRecipientInfo {
  const count = envelopedData.recipientInfos.length;
  if (count !== 1) {
    throw new CmsError('CMS_UNSUPPORTED', `EnvelopedData has ${count} recipients; KMS addresses exactly one, the enclave`);
  }
  const recipient = envelopedData.recipientInfos[0].ktri;
  if (!recipient) {
    throw new CmsError('CMS_UNSUPPORTED', 'the recipient is not a KeyTransRecipientInfo');
  }
  if (recipient.version !== CMSVersion.v2 || !recipient.rid.subjectKeyIdentifier) {
    throw new CmsError('CMS_UNSUPPORTED', 'the recipient is not identified by subjectKeyIdentifier (KeyTransRecipientInfo version 2)');
  }
  checkRsaesOaepSha256(recipient.keyEncryptionAlgorithm);
  if (recipient.encryptedKey.byteLength !== RSA_CIPHERTEXT_BYTES) {
    throw new CmsError('CMS_MALFORMED', `encrypted key is ${recipient.encryptedKey.byteLength} bytes; RSA-${ENCLAVE_RSA_BITS} gives ${RSA_CIPHERTEXT_BYTES}`);
  }
  return recipient;
}

/** RSAES-OAEP with hash SHA-256, MGF1 with SHA-256 and an empty label; nothing else. */
function checkRsaesOaepSha256(algorithm: AlgorithmIdentifier): void {
  if (algorithm.algorithm !== OID.rsaesOaep) {
    throw new CmsError('CMS_UNSUPPORTED', `key encryption algorithm is ${algorithm.algorithm}, not RSAES-OAEP`);
  }
  if (!algorithm.parameters) {
    throw new CmsError('CMS_UNSUPPORTED', 'RSAES-OAEP without parameters means SHA-1; KMS uses SHA-256');
  }
  const params = parseStrict(new Uint8Array(algorithm.parameters), RsaesOaepParams, 'RSAES-OAEP parameters', rsaesOaepParamsShape);
  requireSha256(params.hashAlgorithm, 'RSAES-OAEP hash');
  const mgf = params.maskGenAlgorithm;
  if (!mgf || mgf.algorithm !== OID.mgf1 || !mgf.parameters) {
    throw new CmsError('CMS_UNSUPPORTED', `RSAES-OAEP mask generation is ${mgf ? mgf.algorithm : 'MGF1 with SHA-1 (the default)'}, not MGF1 with SHA-256`);
  }
  requireSha256(parseStrict(new Uint8Array(mgf.parameters), AlgorithmIdentifier, 'MGF1 parameters', algorithmIdentifierShape), 'RSAES-OAEP MGF1 hash');
  const label = params.pSourceAlgorithm;
  if (label) {
    const value = label.algorithm === OID.pSpecified && label.parameters
      ? parseStrict(new Uint8Array(label.parameters), OctetString, 'RSAES-OAEP label', primitiveOctetStringShape)
      : undefined;
    if (!value || value.byteLength !== 0) {
      throw new CmsError('CMS_UNSUPPORTED', 'RSAES-OAEP label is not empty; KMS uses none');
    }
  }
}

/** SHA-256, with its parameters absent or NULL (RFC 4055 section 2.1 allows both). */
function requireSha256(algorithm: AlgorithmIdentifier | undefined, what: string): void {
  if (!algorithm) {
    throw new CmsError('CMS_UNSUPPORTED', `${what} is SHA-1 (the default); KMS uses SHA-256`);
  }
  if (algorithm.algorithm !== OID.sha256) {
    throw new CmsError('CMS_UNSUPPORTED', `${what} is ${algorithm.algorithm}, not SHA-256`);
  }
  if (algorithm.parameters !== undefined && algorithm.parameters !== null) {
    throw new CmsError('CMS_UNSUPPORTED', `${what} has parameters other than NULL`);
  }
}

/** The IV and the encrypted content, its chunks (constructed encoding) joined. */
function encryptedContent(info: EncryptedContentInfo): { iv: Buffer; ciphertext: Buffer } {
  if (info.contentType !== id_data) {
    throw new CmsError('CMS_UNSUPPORTED', `encrypted content type is ${info.contentType}, not id-data`);
  }
  const algorithm = info.contentEncryptionAlgorithm;
  if (algorithm.algorithm !== OID.aes256Cbc) {
    throw new CmsError('CMS_UNSUPPORTED', `content encryption algorithm is ${algorithm.algorithm}, not AES-256-CBC`);
  }
  if (!algorithm.parameters) {
    throw new CmsError('CMS_MALFORMED', 'AES-256-CBC parameters (the IV) are missing');
  }
  const iv = Buffer.from(parseStrict(new Uint8Array(algorithm.parameters), OctetString, 'AES-256-CBC IV', primitiveOctetStringShape).buffer);
  if (iv.length !== AES_BLOCK_BYTES) {
    throw new CmsError('CMS_MALFORMED', `AES-256-CBC IV is ${iv.length} bytes, not ${AES_BLOCK_BYTES}`);
  }
  const content = info.encryptedContent;
  const chunks = content?.value ? [content.value] : content?.constructedValue;
  if (!chunks) {
    throw new CmsError('CMS_MALFORMED', 'encryptedContent is missing (KMS never detaches it)');
  }
  const ciphertext = Buffer.concat(chunks.map((chunk) => Buffer.from(chunk.buffer)));
  if (ciphertext.length === 0 || ciphertext.length % AES_BLOCK_BYTES !== 0 || ciphertext.length > MAX_ENCRYPTED_CONTENT_BYTES) {
    throw new CmsError('CMS_MALFORMED', `encrypted content is ${ciphertext.length} bytes; expected a whole number of ${AES_BLOCK_BYTES}-byte blocks, at most ${MAX_ENCRYPTED_CONTENT_BYTES}`);
  }
  return { iv, ciphertext };
}

/** The content-encryption key, or undefined when OAEP refuses it ({@link DOES_NOT_DECRYPT}). */
function decryptContentKey(recipient: KeyTransRecipientInfo, privateKey: KeyObject): Buffer | undefined {
  let key: Buffer;
  try {
    key = privateDecrypt(
      { key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
      Buffer.from(recipient.encryptedKey.buffer),
    );
  } catch {
    return undefined;
  }
  if (key.length !== AES_256_KEY_BYTES) {
    const length = key.length;
    key.fill(0);
    throw new CmsError('CMS_MALFORMED', `content-encryption key is ${length} bytes; AES-256 needs ${AES_256_KEY_BYTES}`);
  }
  return key;
}

/**
 * The plaintext, or undefined when final() refuses the padding ({@link DOES_NOT_DECRYPT}).
 * update() and final() each return plaintext in a buffer of their own; both are zeroed once
 * joined, or once final() has refused the padding, so the returned buffer is the only copy.
 */
function decryptContent(key: Buffer, iv: Buffer, ciphertext: Buffer): Buffer | undefined {
  const decipher = createDecipheriv('aes-256-cbc', key, iv);
  let head: Buffer | undefined;
  let tail: Buffer | undefined;
  try {
    head = decipher.update(ciphertext);
    tail = decipher.final();
    return Buffer.concat([head, tail]);
  } catch {
    return undefined;
  } finally {
    head?.fill(0);
    tail?.fill(0);
  }
}

/**
 * Parses one whole BER element into `type` with the library's schema, then runs `shape` on
 * asn1js's tree of it; trailing bytes, parser limits, schema mismatches and shape refusals are
 * all CMS_MALFORMED. asn1js is called directly because AsnParser does not report bytes left
 * over after the element, and the tree is needed for what the schema does not check.
 */
function parseStrict<T>(bytes: Uint8Array, type: new () => T, what: string, shape: (node: Node, what: string) => void): T {
  let element: asn1js.FromBerResult;
  try {
    element = asn1js.fromBER(bytes, BER_OPTIONS);
  } catch (error) {
    throw new CmsError('CMS_MALFORMED', `${what} is not valid BER (${(error as Error).message})`);
  }
  if (element.offset === -1) {
    throw new CmsError('CMS_MALFORMED', `${what} is not valid BER (${element.result.error})`);
  }
  if (element.offset !== bytes.byteLength) {
    throw new CmsError('CMS_MALFORMED', `${what} is followed by ${bytes.byteLength - element.offset} unexpected bytes`);
  }
  let parsed: T;
  try {
    parsed = AsnParser.fromASN(element.result, type);
  } catch (error) {
    throw new CmsError('CMS_MALFORMED', `${what} does not match its ASN.1 schema (${(error as Error).message})`);
  }
  shape(element.result as Node, what);
  return parsed;
}

/*
 * What the schema lets through. @peculiar/asn1-schema ignores elements after the last one a
 * SEQUENCE or explicit tag declares, and reads a content chunk of any string type as zero
 * bytes, and a constructed OCTET STRING as empty where it expects a primitive one. These checks
 * run on the asn1js tree once the schema has matched, so each node is already of the right type.
 */

type Node = asn1js.BaseBlock;

const UNIVERSAL = 1;
const CONTEXT = 3;
const OCTET_STRING = 4;
const SEQUENCE = 16;

function isTag(node: Node, tagClass: number, tagNumber: number): boolean {
  return node.idBlock.tagClass === tagClass && node.idBlock.tagNumber === tagNumber;
}

/** The elements of a constructed node; CMS_MALFORMED unless it has `min` to `max` of them. */
function elements(node: Node, min: number, max: number, what: string): Node[] {
  const value = node.idBlock.isConstructed ? ((node as asn1js.Constructed).valueBlock.value as Node[]) : undefined;
  if (!value || value.length < min || value.length > max) {
    const expected = min === max ? `${min}` : max === Infinity ? `at least ${min}` : `${min} to ${max}`;
    throw new CmsError('CMS_MALFORMED', `${what} has ${value ? value.length : 'no'} elements; expected ${expected}`);
  }
  return value;
}

/** ContentInfo ::= SEQUENCE { contentType, content [0] EXPLICIT ANY } */
function contentInfoShape(node: Node, what: string): void {
  const [, content] = elements(node, 2, 2, what);
  elements(content, 1, 1, `${what}'s [0]`);
}

/**
 * EnvelopedData ::= SEQUENCE { version, originatorInfo [0] OPTIONAL, recipientInfos SET,
 * encryptedContentInfo, unprotectedAttrs [1] OPTIONAL }
 */
function envelopedDataShape(node: Node, what: string): void {
  const fields = elements(node, 3, 5, what);
  let next = isTag(fields[1], CONTEXT, 0) ? 2 : 1;
  if (next + 2 > fields.length) {
    throw new CmsError('CMS_MALFORMED', `${what} has ${fields.length} elements; recipientInfos or encryptedContentInfo is missing`);
  }
  const recipientInfos = fields[next++];
  const encryptedContentInfo = fields[next++];
  if (next < fields.length && isTag(fields[next], CONTEXT, 1)) next++;
  if (next !== fields.length) {
    throw new CmsError('CMS_MALFORMED', `${what} has ${fields.length} elements; expected ${next}`);
  }
  // Only a KeyTransRecipientInfo is an untagged SEQUENCE; other kinds are refused later.
  for (const recipient of elements(recipientInfos, 0, Infinity, 'RecipientInfos')) {
    if (isTag(recipient, UNIVERSAL, SEQUENCE)) keyTransRecipientInfoShape(recipient);
  }
  encryptedContentInfoShape(encryptedContentInfo);
}

/** KeyTransRecipientInfo ::= SEQUENCE { version, rid, keyEncryptionAlgorithm, encryptedKey } */
function keyTransRecipientInfoShape(node: Node): void {
  const fields = elements(node, 4, 4, 'KeyTransRecipientInfo');
  algorithmIdentifierShape(fields[2], 'the key encryption AlgorithmIdentifier');
}

/** AlgorithmIdentifier ::= SEQUENCE { algorithm, parameters ANY OPTIONAL } */
function algorithmIdentifierShape(node: Node, what: string): void {
  elements(node, 1, 2, what);
}

/** RSAES-OAEP-params ::= SEQUENCE { [0] EXPLICIT, [1] EXPLICIT, [2] EXPLICIT AlgorithmIdentifier, each OPTIONAL } */
function rsaesOaepParamsShape(node: Node, what: string): void {
  for (const field of elements(node, 0, 3, what)) {
    const [algorithm] = elements(field, 1, 1, `${what}' [${field.idBlock.tagNumber}]`);
    algorithmIdentifierShape(algorithm, `${what}' [${field.idBlock.tagNumber}] AlgorithmIdentifier`);
  }
}

/**
 * EncryptedContentInfo ::= SEQUENCE { contentType, contentEncryptionAlgorithm,
 * encryptedContent [0] IMPLICIT OCTET STRING OPTIONAL }; in BER the content may be
 * constructed, and then every chunk must be an OCTET STRING itself (X.690 8.7.3.2).
 */
function encryptedContentInfoShape(node: Node): void {
  const fields = elements(node, 2, 3, 'EncryptedContentInfo');
  algorithmIdentifierShape(fields[1], 'the content encryption AlgorithmIdentifier');
  const content = fields[2];
  if (!content) return;
  if (!isTag(content, CONTEXT, 0)) {
    throw new CmsError('CMS_MALFORMED', 'EncryptedContentInfo has 3 elements; the third is not encryptedContent [0]');
  }
  if (content.idBlock.isConstructed) {
    elements(content, 0, Infinity, 'encryptedContent').forEach((chunk, index) => octetStringShape(chunk, `encrypted content chunk ${index + 1}`));
  }
}

function octetStringShape(node: Node, what: string): void {
  if (!isTag(node, UNIVERSAL, OCTET_STRING)) {
    const tagClass = ['UNIVERSAL', 'APPLICATION', 'CONTEXT', 'PRIVATE'][node.idBlock.tagClass - 1];
    throw new CmsError('CMS_MALFORMED', `${what} is [${tagClass} ${node.idBlock.tagNumber}], not an OCTET STRING`);
  }
  if (node.idBlock.isConstructed) {
    elements(node, 0, Infinity, what).forEach((chunk, index) => octetStringShape(chunk, `${what}.${index + 1}`));
  }
}

/** An OCTET STRING the schema reads only when primitive (a constructed one reads as empty). */
function primitiveOctetStringShape(node: Node, what: string): void {
  if (node.idBlock.isConstructed) {
    throw new CmsError('CMS_MALFORMED', `${what} is a constructed OCTET STRING; KMS writes it primitive`);
  }
}
