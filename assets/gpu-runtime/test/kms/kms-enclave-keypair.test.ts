import { createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { unwrapCiphertextForRecipient } from '../../src/kms/cms-envelope';
import { generateEnclaveKeyPair, importRecipientPrivateKey, MAX_RECIPIENT_KEY_PEM_BYTES } from '../../src/kms/enclave-keypair';
import { buildCiphertextForRecipient } from './cms-fixtures';
import { refusal } from '../refusal';

describe('generateEnclaveKeyPair', () => {
  it('gives an RSA-2048 private key and its public half as DER SubjectPublicKeyInfo', () => {
    const { privateKey, publicKeyDer } = generateEnclaveKeyPair();
    const publicKey = createPublicKey({ key: publicKeyDer, format: 'der', type: 'spki' });
    expect(privateKey.type).toBe('private');
    expect(publicKey.asymmetricKeyType).toBe('rsa');
    expect(publicKey.asymmetricKeyDetails).toMatchObject({ modulusLength: 2048, publicExponent: 65537n });
    expect(createPublicKey(privateKey).export({ type: 'spki', format: 'der' })).toEqual(publicKeyDer);
    // 294 bytes: well inside the attestation document's 1024-byte public_key field.
    expect(publicKeyDer.length).toBe(294);
  });

  it('opens what KMS encrypts to the public key in the document', () => {
    const { privateKey, publicKeyDer } = generateEnclaveKeyPair();
    const dataKey = randomBytes(32);
    const envelope = buildCiphertextForRecipient({ recipient: createPublicKey({ key: publicKeyDer, format: 'der', type: 'spki' }), plaintext: dataKey });
    expect(unwrapCiphertextForRecipient(envelope.bytes, privateKey)).toEqual(dataKey);
  });

  it('makes a different key pair each time', () => {
    expect(generateEnclaveKeyPair().publicKeyDer).not.toEqual(generateEnclaveKeyPair().publicKeyDer);
  });
});

describe('importRecipientPrivateKey', () => {
  const pem = (key: ReturnType<typeof generateKeyPairSync>['privateKey']) => key.export({ type: 'pkcs8', format: 'pem' });

  it('loads an RSA-2048 private key from PKCS #8 or PKCS #1 PEM', () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    expect(importRecipientPrivateKey(pem(privateKey)).asymmetricKeyDetails?.modulusLength).toBe(2048);
    expect(importRecipientPrivateKey(privateKey.export({ type: 'pkcs1', format: 'pem' })).type).toBe('private');
  });

  it('refuses other keys, public keys, garbage and oversized input with KMS_RECIPIENT', () => {
    const rsa3072 = generateKeyPairSync('rsa', { modulusLength: 3072 });
    const cases = [
      pem(rsa3072.privateKey),
      pem(generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey),
      rsa3072.publicKey.export({ type: 'spki', format: 'pem' }),
      'not a key',
      'x'.repeat(MAX_RECIPIENT_KEY_PEM_BYTES + 1),
    ];
    for (const input of cases) {
      expect(refusal(() => importRecipientPrivateKey(input)).code).toBe('KMS_RECIPIENT');
    }
  });
});
