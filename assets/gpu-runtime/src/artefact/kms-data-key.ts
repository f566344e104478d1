/**
 * The KMS side of artefact sealing: wrapping the data key where artefacts are published,
 * unwrapping it inside the enclave.
 */
import { EncryptCommand, KMSClient } from '@aws-sdk/client-kms';
import { KmsError } from '../kms/errors';
import { callKms } from '../kms/kms-call';
import { decryptForRecipient, KmsRecipient } from '../kms/recipient';
import type { UnwrapDataKey } from './open';

/** The data key as KMS wrapped it, and the ARN of the key that did. */
export interface WrappedDataKey {
  readonly encryptedDataKey: Uint8Array;
  readonly keyId: string;
}

/**
 * Wraps a locally generated data key with `kms:Encrypt`. Not GenerateDataKey: it returns
 * the key in plaintext, so an AttestationBoundKey denies it to everyone outside an attested
 * enclave, publishers included; publishers are granted Encrypt, which returns no key material.
 */
export async function wrapDataKey(
  kms: KMSClient,
  keyId: string,
  dataKey: Buffer,
  encryptionContext: Readonly<Record<string, string>>,
): Promise<WrappedDataKey> {
  const command = new EncryptCommand({
    KeyId: keyId,
    Plaintext: dataKey,
    ...(Object.keys(encryptionContext).length > 0 ? { EncryptionContext: { ...encryptionContext } } : {}),
  });
  const response = await callKms('Encrypt', (abortSignal) => kms.send(command, { abortSignal }));
  if (!response.CiphertextBlob || response.CiphertextBlob.byteLength === 0 || !response.KeyId) {
    throw new KmsError('KMS_RESPONSE', 'Encrypt returned no CiphertextBlob or no KeyId');
  }
  return { encryptedDataKey: response.CiphertextBlob, keyId: response.KeyId };
}

/**
 * The enclave's way to open an artefact: `kms:Decrypt` with Recipient under the key and
 * encryption context from the artefact's header, then the CMS unwrap with the enclave's
 * private key. The data key never exists in plaintext outside this process.
 */
export function unwrapWithKmsRecipient(kms: KMSClient, recipient: KmsRecipient): UnwrapDataKey {
  return async (encryptedDataKey, keyId, encryptionContext) => {
    const context = Object.keys(encryptionContext).length > 0 ? encryptionContext : undefined;
    const { plaintext } = await decryptForRecipient(kms, encryptedDataKey, { keyId, encryptionContext: context }, recipient);
    return plaintext;
  };
}
