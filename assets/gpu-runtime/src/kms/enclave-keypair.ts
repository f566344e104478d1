import { createPrivateKey, generateKeyPairSync, KeyObject } from 'node:crypto';
import { KmsError } from './errors';

/** RSA modulus size of the enclave's recipient key: KMS encrypts to it with RSAES_OAEP_SHA_256. */
export const ENCLAVE_RSA_BITS = 2048;

/** Largest PEM file accepted for a recipient key (an RSA-2048 PKCS #8 PEM is about 1.7 KiB). */
export const MAX_RECIPIENT_KEY_PEM_BYTES = 16 * 1024;

/** The enclave's recipient key pair. */
export interface EnclaveKeyPair {
  /**
   * The private key, as a `KeyObject` in this process's memory: it is never exported or
   * written anywhere, so it dies with the enclave.
   */
  readonly privateKey: KeyObject;
  /** DER SubjectPublicKeyInfo: the `public_key` field of the attestation document KMS reads. */
  readonly publicKeyDer: Buffer;
}

/** Generates a fresh RSA-2048 key pair (public exponent 65537) for the attestation document. */
export function generateEnclaveKeyPair(): EnclaveKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: ENCLAVE_RSA_BITS, publicExponent: 0x10001 });
  return { privateKey, publicKeyDer: publicKey.export({ type: 'spki', format: 'der' }) };
}

/**
 * Loads a recipient private key from PEM, for running the KMS Recipient flow outside an
 * enclave's memory (local mode, tests): refuses anything but an RSA-2048 private key.
 */
export function importRecipientPrivateKey(pem: string | Buffer): KeyObject {
  if (pem.length > MAX_RECIPIENT_KEY_PEM_BYTES) {
    throw new KmsError('KMS_RECIPIENT', `recipient key PEM is ${pem.length} bytes, at most ${MAX_RECIPIENT_KEY_PEM_BYTES}`);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: 'pem' });
  } catch (error) {
    throw new KmsError('KMS_RECIPIENT', `recipient key is not a readable PEM private key (${(error as Error).message})`);
  }
  assertEnclavePrivateKey(key);
  return key;
}

/** Throws unless `key` is an RSA-2048 private key, the only kind KMS's recipient profile fits. */
export function assertEnclavePrivateKey(key: KeyObject): void {
  const bits = key.asymmetricKeyDetails?.modulusLength;
  if (key.type !== 'private' || key.asymmetricKeyType !== 'rsa' || bits !== ENCLAVE_RSA_BITS) {
    const what = key.type === 'private' ? `${key.asymmetricKeyType} private key${bits ? ` of ${bits} bits` : ''}` : `${key.type} key`;
    throw new KmsError('KMS_RECIPIENT', `recipient key is a ${what}; an RSA-${ENCLAVE_RSA_BITS} private key is required`);
  }
}
