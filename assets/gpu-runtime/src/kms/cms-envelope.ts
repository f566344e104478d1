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
  try {
    return decryptContent(contentKey, iv, ciphertext);
  } finally {
    contentKey.fill(0);
  }
}

function parseEnvelopedData(ber: Uint8Array): EnvelopedData {
  const contentInfo = parseStrict(ber, ContentInfo, 'ContentInfo');
  if (contentInfo.contentType !== id_envelopedData) {
    throw new CmsError('CMS_UNSUPPORTED', `content type is ${contentInfo.contentType}, not id-envelopedData`);
  }
  const envelopedData = parseStrict(new Uint8Array(contentInfo.content), EnvelopedData, 'EnvelopedData');
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
  const params = parseStrict(new Uint8Array(algorithm.parameters), RsaesOaepParams, 'RSAES-OAEP parameters');
  requireSha256(params.hashAlgorithm, 'RSAES-OAEP hash');
  const mgf = params.maskGenAlgorithm;
  if (!mgf || mgf.algorithm !== OID.mgf1 || !mgf.parameters) {
    throw new CmsError('CMS_UNSUPPORTED', `RSAES-OAEP mask generation is ${mgf ? mgf.algorithm : 'MGF1 with SHA-1 (the default)'}, not MGF1 with SHA-256`);
  }
  requireSha256(parseStrict(new Uint8Array(mgf.parameters), AlgorithmIdentifier, 'MGF1 parameters'), 'RSAES-OAEP MGF1 hash');
  const label = params.pSourceAlgorithm;
  if (label) {
    const value = label.algorithm === OID.pSpecified && label.parameters
      ? parseStrict(new Uint8Array(label.parameters), OctetString, 'RSAES-OAEP label')
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
  const iv = Buffer.from(parseStrict(new Uint8Array(algorithm.parameters), OctetString, 'AES-256-CBC IV').buffer);
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

function decryptContentKey(recipient: KeyTransRecipientInfo, privateKey: KeyObject): Buffer {
  let key: Buffer;
  try {
    key = privateDecrypt(
      { key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
      Buffer.from(recipient.encryptedKey.buffer),
    );
  } catch {
    throw new CmsError('CMS_DECRYPT', 'the content-encryption key does not decrypt with this private key (is it the key whose public half is in the attestation document?)');
  }
  if (key.length !== AES_256_KEY_BYTES) {
    const length = key.length;
    key.fill(0);
    throw new CmsError('CMS_MALFORMED', `content-encryption key is ${length} bytes; AES-256 needs ${AES_256_KEY_BYTES}`);
  }
  return key;
}

/**
 * update() and final() each return plaintext in a buffer of their own; both are zeroed once
 * joined, or once final() has refused the padding, so the returned buffer is the only copy.
 */
function decryptContent(key: Buffer, iv: Buffer, ciphertext: Buffer): Buffer {
  const decipher = createDecipheriv('aes-256-cbc', key, iv);
  let head: Buffer | undefined;
  let tail: Buffer | undefined;
  try {
    head = decipher.update(ciphertext);
    tail = decipher.final();
    return Buffer.concat([head, tail]);
  } catch {
    throw new CmsError('CMS_DECRYPT', 'the content does not decrypt (bad padding): the envelope is corrupted');
  } finally {
    head?.fill(0);
    tail?.fill(0);
  }
}

/**
 * Parses one whole BER element into `type` with the library's schema; trailing bytes, parser
 * limits and schema mismatches are all CMS_MALFORMED. asn1js is called directly only because
 * AsnParser does not report bytes left over after the element.
 */
function parseStrict<T>(bytes: Uint8Array, type: new () => T, what: string): T {
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
  try {
    return AsnParser.fromASN(element.result, type);
  } catch (error) {
    throw new CmsError('CMS_MALFORMED', `${what} does not match its ASN.1 schema (${(error as Error).message})`);
  }
}
