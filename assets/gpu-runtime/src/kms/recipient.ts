/**
 * KMS requests made from inside an enclave with `Recipient`: KMS checks the attestation
 * document against the key policy, encrypts the result to the document's public key and
 * returns it as `CiphertextForRecipient` (its `Plaintext` stays null), which only this
 * enclave's private key opens.
 */
import { KeyObject } from 'node:crypto';
import { DecryptCommand, GenerateDataKeyCommand, KMSClient, RecipientInfo } from '@aws-sdk/client-kms';
import { unwrapCiphertextForRecipient } from './cms-envelope';
import { KmsError } from './errors';
import { callKms } from './kms-call';

/** Largest attestation document sent (NSM's are about 4.5 KiB). */
export const MAX_ATTESTATION_DOCUMENT_BYTES = 16 * 1024;

/** Largest `CiphertextBlob` accepted from or sent to KMS (KMS's own limit). */
export const MAX_CIPHERTEXT_BLOB_BYTES = 6144;

const DATA_KEY_BYTES = 32;

/** Who KMS encrypts for: the enclave's attestation document and the private key matching its `public_key`. */
export interface KmsRecipient {
  /** The raw attestation document (COSE_Sign1 bytes) from NSM. */
  readonly attestationDocument: Uint8Array;
  /** The RSA-2048 private key whose public half is the document's `public_key`. */
  readonly privateKey: KeyObject;
}

/** A KMS key, and the encryption context bound to the ciphertext, if any. */
export interface KmsKeyRequest {
  /** Key id, ARN or alias. Optional for Decrypt (the ciphertext names its key), but giving it pins the key. */
  readonly keyId?: string;
  readonly encryptionContext?: Readonly<Record<string, string>>;
}

/** Decrypt's result: the plaintext, which only this process has seen outside KMS. */
export interface RecipientPlaintext {
  readonly plaintext: Buffer;
  /** The ARN of the key KMS used. */
  readonly keyId: string;
}

/** GenerateDataKey's result: a fresh AES-256 data key and its ciphertext under the KMS key. */
export interface RecipientDataKey extends RecipientPlaintext {
  /** The data key encrypted under the KMS key, to store next to what it protects. */
  readonly ciphertextBlob: Uint8Array;
}

/** `kms:Decrypt` with Recipient: decrypts `ciphertextBlob` into this enclave only. */
export async function decryptForRecipient(
  kms: KMSClient,
  ciphertextBlob: Uint8Array,
  key: KmsKeyRequest,
  recipient: KmsRecipient,
): Promise<RecipientPlaintext> {
  if (ciphertextBlob.byteLength === 0 || ciphertextBlob.byteLength > MAX_CIPHERTEXT_BLOB_BYTES) {
    throw new KmsError('KMS_REQUEST', `ciphertext blob is ${ciphertextBlob.byteLength} bytes; KMS accepts 1 to ${MAX_CIPHERTEXT_BLOB_BYTES}`);
  }
  const command = new DecryptCommand({
    CiphertextBlob: ciphertextBlob,
    ...(key.keyId !== undefined ? { KeyId: key.keyId } : {}),
    ...contextField(key),
    Recipient: recipientInfo(recipient),
  });
  const response = await callKms('Decrypt', (abortSignal) => kms.send(command, { abortSignal }));
  return unwrapResponse('Decrypt', response, recipient);
}

/** `kms:GenerateDataKey` (AES_256) with Recipient: a data key that only this enclave sees in plaintext. */
export async function generateDataKeyForRecipient(
  kms: KMSClient,
  key: KmsKeyRequest & { readonly keyId: string },
  recipient: KmsRecipient,
): Promise<RecipientDataKey> {
  const command = new GenerateDataKeyCommand({
    KeyId: key.keyId,
    KeySpec: 'AES_256',
    ...contextField(key),
    Recipient: recipientInfo(recipient),
  });
  const response = await callKms('GenerateDataKey', (abortSignal) => kms.send(command, { abortSignal }));
  const ciphertextBlob = response.CiphertextBlob;
  if (!ciphertextBlob || ciphertextBlob.byteLength === 0 || ciphertextBlob.byteLength > MAX_CIPHERTEXT_BLOB_BYTES) {
    throw new KmsError('KMS_RESPONSE', `GenerateDataKey returned a CiphertextBlob of ${ciphertextBlob?.byteLength ?? 0} bytes; expected 1 to ${MAX_CIPHERTEXT_BLOB_BYTES}`);
  }
  const { plaintext, keyId } = unwrapResponse('GenerateDataKey', response, recipient);
  if (plaintext.length !== DATA_KEY_BYTES) {
    const length = plaintext.length;
    plaintext.fill(0);
    throw new KmsError('KMS_RESPONSE', `GenerateDataKey returned a ${length}-byte data key; AES_256 is ${DATA_KEY_BYTES}`);
  }
  return { plaintext, ciphertextBlob, keyId };
}

/** Sent only when given, so a request without a context looks like one written by hand. */
function contextField(key: KmsKeyRequest): { EncryptionContext?: Record<string, string> } {
  return key.encryptionContext !== undefined ? { EncryptionContext: { ...key.encryptionContext } } : {};
}

function recipientInfo(recipient: KmsRecipient): RecipientInfo {
  const size = recipient.attestationDocument.byteLength;
  if (size === 0 || size > MAX_ATTESTATION_DOCUMENT_BYTES) {
    throw new KmsError('KMS_RECIPIENT', `attestation document is ${size} bytes; expected 1 to ${MAX_ATTESTATION_DOCUMENT_BYTES}`);
  }
  return { KeyEncryptionAlgorithm: 'RSAES_OAEP_SHA_256', AttestationDocument: recipient.attestationDocument };
}

/**
 * A Recipient response must carry the result only as `CiphertextForRecipient`. Plaintext in
 * it means the Recipient was dropped somewhere (an old endpoint, a proxy rewriting requests)
 * and the key travelled outside the enclave's envelope: refuse it rather than use it.
 * Every other field is checked before unwrapping, so no refusal leaves plaintext behind.
 */
function unwrapResponse(
  operation: string,
  response: { Plaintext?: Uint8Array; CiphertextForRecipient?: Uint8Array; KeyId?: string },
  recipient: KmsRecipient,
): RecipientPlaintext {
  if (response.Plaintext && response.Plaintext.byteLength > 0) {
    response.Plaintext.fill(0); // refused, and not kept in this buffer (best effort: the SDK's parsed response is garbage-collected in its time)
    throw new KmsError('KMS_PLAINTEXT_RETURNED', `${operation} with Recipient returned Plaintext; refusing a key that left KMS unwrapped`);
  }
  if (!response.CiphertextForRecipient || response.CiphertextForRecipient.byteLength === 0) {
    throw new KmsError('KMS_NO_RECIPIENT_CIPHERTEXT', `${operation} with Recipient returned no CiphertextForRecipient`);
  }
  const keyId = requireKeyId(operation, response.KeyId);
  return { plaintext: unwrapCiphertextForRecipient(response.CiphertextForRecipient, recipient.privateKey), keyId };
}

function requireKeyId(operation: string, keyId: string | undefined): string {
  if (!keyId) {
    throw new KmsError('KMS_RESPONSE', `${operation} returned no KeyId`);
  }
  return keyId;
}
