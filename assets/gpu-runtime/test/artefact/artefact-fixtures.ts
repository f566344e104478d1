/**
 * A KMS stand-in behind aws-sdk-client-mock (the only thing mocked) that behaves like KMS for
 * the calls artefacts make: Encrypt remembers the plaintext and its encryption context;
 * Decrypt insists on the same context and key, and answers a Recipient request the way KMS
 * does, with CiphertextForRecipient built for the enclave's public key and no Plaintext.
 * Plus stream helpers, so tests seal and open buffers.
 */
import { createPublicKey, randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { DecryptCommand, EncryptCommand, IncorrectKeyException, InvalidCiphertextException, KMSClient } from '@aws-sdk/client-kms';
import { AwsClientStub, mockClient } from 'aws-sdk-client-mock';
import { isDeepStrictEqual } from 'node:util';
import { open, OpenOptions, OpenResult, UnwrapDataKey } from '../../src/artefact/open';
import { seal, SealOptions, SealResult } from '../../src/artefact/seal';
import { EnclaveKeyPair, generateEnclaveKeyPair } from '../../src/kms/enclave-keypair';
import { buildCiphertextForRecipient } from '../kms/cms-fixtures';

export const KEY_ARN = 'arn:aws:kms:eu-west-1:111122223333:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0';

interface Wrapped {
  readonly plaintext: Buffer;
  readonly context: Record<string, string> | undefined;
  readonly keyArn: string;
}

export interface FakeKms {
  readonly mock: AwsClientStub<KMSClient>;
  readonly client: KMSClient;
  readonly enclave: EnclaveKeyPair;
  /** The bytes KMS would verify and take the enclave's public key from. */
  readonly attestationDocument: Buffer;
  /** Opens artefacts by looking the data key up directly, for tests about the format rather than KMS. */
  readonly unwrapDataKey: UnwrapDataKey;
  /** Sets up the Encrypt and Decrypt behaviour again (after `mock.reset()`). */
  install(): void;
}

export function fakeKms(): FakeKms {
  const mock = mockClient(KMSClient);
  const enclave = generateEnclaveKeyPair();
  const attestationDocument = Buffer.concat([Buffer.of(0x84), randomBytes(1500)]);
  const enclavePublicKey = createPublicKey({ key: enclave.publicKeyDer, format: 'der', type: 'spki' });
  const wrapped = new Map<string, Wrapped>();

  const install = () => {
    mock.on(EncryptCommand).callsFake((input: EncryptCommand['input']) => {
      const ciphertextBlob = randomBytes(184);
      // A key named by its ARN is that key; an alias or id is KEY_ARN's.
      const keyArn = input.KeyId?.startsWith('arn:aws:kms:') ? input.KeyId : KEY_ARN;
      wrapped.set(ciphertextBlob.toString('hex'), { plaintext: Buffer.from(input.Plaintext!), context: input.EncryptionContext, keyArn });
      return { CiphertextBlob: ciphertextBlob, KeyId: keyArn, EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' };
    });
    mock.on(DecryptCommand).callsFake((input: DecryptCommand['input']) => {
      const entry = wrapped.get(Buffer.from(input.CiphertextBlob!).toString('hex'));
      if (!entry || !isDeepStrictEqual(entry.context ?? {}, input.EncryptionContext ?? {})) {
        throw new InvalidCiphertextException({ message: 'The ciphertext is invalid', $metadata: {} });
      }
      if (input.KeyId !== undefined && input.KeyId !== entry.keyArn) {
        throw new IncorrectKeyException({ message: 'The key ID in the request does not identify a CMK that can perform this operation', $metadata: {} });
      }
      if (!input.Recipient?.AttestationDocument || !Buffer.from(input.Recipient.AttestationDocument).equals(attestationDocument)) {
        throw new Error('this test KMS answers only Recipient requests with the enclave\'s document');
      }
      const envelope = buildCiphertextForRecipient({ recipient: enclavePublicKey, plaintext: entry.plaintext, encoding: 'indefinite', chunkBytes: 1000 });
      return { KeyId: entry.keyArn, EncryptionAlgorithm: 'SYMMETRIC_DEFAULT', CiphertextForRecipient: envelope.bytes };
    });
  };
  install();

  const unwrapDataKey: UnwrapDataKey = async (encryptedDataKey) => {
    const entry = wrapped.get(Buffer.from(encryptedDataKey).toString('hex'));
    if (!entry) throw new Error('unknown encrypted data key');
    return Buffer.from(entry.plaintext);
  };
  return { mock, client: new KMSClient({ region: 'eu-west-1' }), enclave, attestationDocument, unwrapDataKey, install };
}

/** `bytes` as a stream of odd-sized pieces, so chunk boundaries never line up with read boundaries. */
export function streamOf(bytes: Buffer, pieceBytes = 7919): Readable {
  return Readable.from((function* pieces() {
    for (let offset = 0; offset < bytes.length; offset += pieceBytes) yield bytes.subarray(offset, offset + pieceBytes);
  })());
}

/** A Writable that keeps what it is given. */
export function collector(): { stream: Writable; bytes(): Buffer } {
  const chunks: Buffer[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      chunks.push(Buffer.from(chunk));
      done();
    },
  });
  return { stream, bytes: () => Buffer.concat(chunks) };
}

export async function sealBytes(plaintext: Buffer, options: SealOptions): Promise<{ sealed: Buffer; result: SealResult }> {
  const output = collector();
  const result = await seal(streamOf(plaintext), output.stream, options);
  return { sealed: output.bytes(), result };
}

/** Opens `sealed`; on failure returns the error and the plaintext written before it. */
export async function openBytes(sealed: Buffer, options: OpenOptions): Promise<{ plaintext: Buffer; result?: OpenResult; error?: unknown }> {
  const output = collector();
  try {
    const result = await open(streamOf(sealed), output.stream, options);
    return { plaintext: output.bytes(), result };
  } catch (error) {
    return { plaintext: output.bytes(), error };
  }
}
