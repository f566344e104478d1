import { createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { DecryptCommand, GenerateDataKeyCommand, InvalidCiphertextException, KMSClient } from '@aws-sdk/client-kms';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RuntimeError } from '../../src/errors';
import { generateEnclaveKeyPair } from '../../src/kms/enclave-keypair';
import { decryptForRecipient, generateDataKeyForRecipient, KmsRecipient, MAX_ATTESTATION_DOCUMENT_BYTES } from '../../src/kms/recipient';
import { buildCiphertextForRecipient } from './cms-fixtures';
import { watchPlaintextCopies } from './plaintext-copies';

const KEY_ARN = 'arn:aws:kms:eu-west-1:111122223333:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0';
const enclave = generateEnclaveKeyPair();
/** Stands in for NSM's document: KMS reads the public key from it; here the mock is told it directly. */
const attestationDocument = Buffer.concat([Buffer.of(0x84), randomBytes(4000)]);
const recipient: KmsRecipient = { attestationDocument, privateKey: enclave.privateKey };
const EXPECTED_RECIPIENT = { KeyEncryptionAlgorithm: 'RSAES_OAEP_SHA_256', AttestationDocument: attestationDocument };

const kms = mockClient(KMSClient);
const client = new KMSClient({ region: 'eu-west-1' });

/** What KMS returns for a Recipient request: the plaintext only inside CMS for the document's key. */
function forEnclave(plaintext: Buffer): Uint8Array {
  const documentPublicKey = createPublicKey({ key: enclave.publicKeyDer, format: 'der', type: 'spki' });
  return buildCiphertextForRecipient({ recipient: documentPublicKey, plaintext, encoding: 'indefinite', chunkBytes: 1024 }).bytes;
}

async function refusal(promise: Promise<unknown>): Promise<RuntimeError> {
  const error = await promise.then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(RuntimeError);
  return error as RuntimeError;
}

beforeEach(() => kms.reset());
afterEach(() => kms.reset());

describe('generateDataKeyForRecipient', () => {
  it('sends GenerateDataKey AES_256 with the Recipient and unwraps CiphertextForRecipient', async () => {
    const dataKey = randomBytes(32);
    const ciphertextBlob = randomBytes(184);
    kms.on(GenerateDataKeyCommand).resolves({ KeyId: KEY_ARN, CiphertextBlob: ciphertextBlob, CiphertextForRecipient: forEnclave(dataKey) });

    const result = await generateDataKeyForRecipient(client, { keyId: 'alias/models', encryptionContext: { model: 'llama' } }, recipient);

    expect(result).toEqual({ plaintext: dataKey, ciphertextBlob, keyId: KEY_ARN });
    const calls = kms.commandCalls(GenerateDataKeyCommand);
    expect(calls).toHaveLength(1);
    expect(calls[0].args[0].input).toStrictEqual({
      KeyId: 'alias/models',
      KeySpec: 'AES_256',
      EncryptionContext: { model: 'llama' },
      Recipient: EXPECTED_RECIPIENT,
    });
    expect(Buffer.from(calls[0].args[0].input.Recipient!.AttestationDocument!)).toEqual(attestationDocument);
    // The deadline: send(command, { abortSignal }).
    expect((calls[0].args as unknown[])[1]).toEqual({ abortSignal: expect.any(AbortSignal) });
  });

  it('leaves EncryptionContext out when none is given', async () => {
    kms.on(GenerateDataKeyCommand).resolves({ KeyId: KEY_ARN, CiphertextBlob: randomBytes(184), CiphertextForRecipient: forEnclave(randomBytes(32)) });
    await generateDataKeyForRecipient(client, { keyId: KEY_ARN }, recipient);
    expect(kms.commandCalls(GenerateDataKeyCommand)[0].args[0].input).toStrictEqual({ KeyId: KEY_ARN, KeySpec: 'AES_256', Recipient: EXPECTED_RECIPIENT });
  });

  it('refuses a data key that is not 256 bits', async () => {
    kms.on(GenerateDataKeyCommand).resolves({ KeyId: KEY_ARN, CiphertextBlob: randomBytes(184), CiphertextForRecipient: forEnclave(randomBytes(16)) });
    const error = await refusal(generateDataKeyForRecipient(client, { keyId: KEY_ARN }, recipient));
    expect(error.code).toBe('KMS_RESPONSE');
    expect(error.reason).toContain('16-byte data key');
  });

  it('a refused response leaves no copy of the unwrapped data key: without KeyId, or a key that is not 256 bits', async () => {
    for (const dataKey of [randomBytes(32), randomBytes(16)]) {
      const response = dataKey.length === 32
        ? { CiphertextBlob: randomBytes(184), CiphertextForRecipient: forEnclave(dataKey) }
        : { KeyId: KEY_ARN, CiphertextBlob: randomBytes(184), CiphertextForRecipient: forEnclave(dataKey) };
      kms.on(GenerateDataKeyCommand).resolves(response);
      const watch = watchPlaintextCopies();
      try {
        expect((await refusal(generateDataKeyForRecipient(client, { keyId: KEY_ARN }, recipient))).code).toBe('KMS_RESPONSE');
        // Without KeyId the response is refused before anything is unwrapped (nothing decrypted at
        // all); the 16-byte key is unwrapped, then refused, so the watch saw its buffers.
        if (dataKey.length === 32) expect(watch.seen).toBe(0);
        else expect(watch.seen).toBeGreaterThan(0);
        expect(watch.holding(dataKey)).toBe(0);
      } finally {
        watch.restore();
      }
    }
  });

  it('refuses a response without CiphertextBlob', async () => {
    kms.on(GenerateDataKeyCommand).resolves({ KeyId: KEY_ARN, CiphertextForRecipient: forEnclave(randomBytes(32)) });
    expect((await refusal(generateDataKeyForRecipient(client, { keyId: KEY_ARN }, recipient))).code).toBe('KMS_RESPONSE');
  });
});

describe('decryptForRecipient', () => {
  const ciphertextBlob = randomBytes(200);

  it('sends Decrypt with the Recipient, key and context, and unwraps CiphertextForRecipient', async () => {
    const plaintext = randomBytes(32);
    kms.on(DecryptCommand).resolves({ KeyId: KEY_ARN, EncryptionAlgorithm: 'SYMMETRIC_DEFAULT', CiphertextForRecipient: forEnclave(plaintext) });

    const result = await decryptForRecipient(client, ciphertextBlob, { keyId: KEY_ARN, encryptionContext: { artefact: 'weights' } }, recipient);

    expect(result).toEqual({ plaintext, keyId: KEY_ARN });
    expect(kms.commandCalls(DecryptCommand)[0].args[0].input).toStrictEqual({
      CiphertextBlob: ciphertextBlob,
      KeyId: KEY_ARN,
      EncryptionContext: { artefact: 'weights' },
      Recipient: EXPECTED_RECIPIENT,
    });
  });

  it('sends no KeyId when none is given (the ciphertext names its key)', async () => {
    kms.on(DecryptCommand).resolves({ KeyId: KEY_ARN, CiphertextForRecipient: forEnclave(randomBytes(8)) });
    await decryptForRecipient(client, ciphertextBlob, {}, recipient);
    expect(kms.commandCalls(DecryptCommand)[0].args[0].input).toStrictEqual({ CiphertextBlob: ciphertextBlob, Recipient: EXPECTED_RECIPIENT });
  });

  it('accepts an empty Plaintext next to CiphertextForRecipient (KMS documents "null or empty")', async () => {
    const plaintext = randomBytes(32);
    kms.on(DecryptCommand).resolves({ KeyId: KEY_ARN, Plaintext: new Uint8Array(0), CiphertextForRecipient: forEnclave(plaintext) });
    expect((await decryptForRecipient(client, ciphertextBlob, {}, recipient)).plaintext).toEqual(plaintext);
  });

  it('refuses a response that carries Plaintext, with or without CiphertextForRecipient, and zeroes that Plaintext', async () => {
    for (const response of [
      { KeyId: KEY_ARN, Plaintext: randomBytes(32) },
      { KeyId: KEY_ARN, Plaintext: randomBytes(32), CiphertextForRecipient: forEnclave(randomBytes(32)) },
    ]) {
      kms.on(DecryptCommand).resolves(response);
      const error = await refusal(decryptForRecipient(client, ciphertextBlob, {}, recipient));
      expect(error.code).toBe('KMS_PLAINTEXT_RETURNED');
      expect(response.Plaintext.equals(Buffer.alloc(32))).toBe(true);
    }
  });

  it('refuses a response without CiphertextForRecipient', async () => {
    kms.on(DecryptCommand).resolves({ KeyId: KEY_ARN });
    expect((await refusal(decryptForRecipient(client, ciphertextBlob, {}, recipient))).code).toBe('KMS_NO_RECIPIENT_CIPHERTEXT');
  });

  it('refuses a response without KeyId', async () => {
    kms.on(DecryptCommand).resolves({ CiphertextForRecipient: forEnclave(randomBytes(32)) });
    expect((await refusal(decryptForRecipient(client, ciphertextBlob, {}, recipient))).code).toBe('KMS_RESPONSE');
  });

  it('a response without KeyId leaves no copy of the plaintext behind', async () => {
    const plaintext = randomBytes(32);
    kms.on(DecryptCommand).resolves({ CiphertextForRecipient: forEnclave(plaintext) });
    const watch = watchPlaintextCopies();
    try {
      expect((await refusal(decryptForRecipient(client, ciphertextBlob, {}, recipient))).code).toBe('KMS_RESPONSE');
      expect(watch.seen).toBe(0); // KeyId is checked before CiphertextForRecipient is unwrapped: nothing was decrypted
      expect(watch.holding(plaintext)).toBe(0);
    } finally {
      watch.restore();
    }
  });

  it('passes on a CMS refusal: CiphertextForRecipient made for another key', async () => {
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey;
    kms.on(DecryptCommand).resolves({ KeyId: KEY_ARN, CiphertextForRecipient: buildCiphertextForRecipient({ recipient: other, plaintext: randomBytes(32) }).bytes });
    expect((await refusal(decryptForRecipient(client, ciphertextBlob, {}, recipient))).code).toBe('CMS_DECRYPT');
  });

  it('turns a KMS error into KMS_CALL naming the operation and the exception', async () => {
    kms.on(DecryptCommand).rejects(new InvalidCiphertextException({ message: 'The ciphertext is invalid', $metadata: {} }));
    const error = await refusal(decryptForRecipient(client, ciphertextBlob, {}, recipient));
    expect(error.code).toBe('KMS_CALL');
    expect(error.reason).toBe('KMS Decrypt failed: InvalidCiphertextException: The ciphertext is invalid');
  });

  it('refuses an empty or oversized attestation document, or ciphertext, before calling KMS', async () => {
    for (const document of [new Uint8Array(0), new Uint8Array(MAX_ATTESTATION_DOCUMENT_BYTES + 1)]) {
      const error = await refusal(decryptForRecipient(client, ciphertextBlob, {}, { ...recipient, attestationDocument: document }));
      expect(error.code).toBe('KMS_RECIPIENT');
    }
    expect((await refusal(decryptForRecipient(client, new Uint8Array(0), {}, recipient))).code).toBe('KMS_REQUEST');
    expect(kms.calls()).toHaveLength(0);
  });
});
