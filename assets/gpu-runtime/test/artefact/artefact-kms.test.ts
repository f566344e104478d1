/**
 * The whole path with KMS mocked (the only thing mocked): sealing with kms:Encrypt, opening
 * with kms:Decrypt + Recipient and the CMS unwrap, both through the library and through the
 * `egpu artefact` command functions, in this process (the mock cannot reach a child process).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { DecryptCommand, EncryptCommand } from '@aws-sdk/client-kms';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { decodeHeader } from '../../src/artefact/header';
import { unwrapWithKmsRecipient } from '../../src/artefact/kms-data-key';
import { ARTEFACT_COMMANDS } from '../../src/cli/artefact-command';
import { CommandIo, dispatch } from '../../src/cli/command';
import { RuntimeError } from '../../src/errors';
import { fakeKms, KEY_ARN, openBytes, sealBytes } from './artefact-fixtures';

const kms = fakeKms();
const recipient = { attestationDocument: kms.attestationDocument, privateKey: kms.enclave.privateKey };
const work = mkdtempSync(path.join(tmpdir(), 'egpu-artefact-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

beforeEach(() => {
  kms.mock.reset();
  kms.install();
});

describe('open with kms:Decrypt and Recipient', () => {
  it('asks KMS with the header\'s encrypted key, key ARN and context, and the attestation document', async () => {
    const plaintext = randomBytes(5000);
    const context = { artefact: 'weights' };
    const { sealed } = await sealBytes(plaintext, { kms: kms.client, keyId: 'alias/models', chunkSize: 1024, encryptionContext: context });
    const header = decodeHeader(sealed.subarray(0, sealed.readUInt32BE(5)));

    const opened = await openBytes(sealed, { unwrapDataKey: unwrapWithKmsRecipient(kms.client, recipient), expected: { encryptionContext: context, keyArn: KEY_ARN } });

    expect(opened.error).toBeUndefined();
    expect(opened.plaintext.equals(plaintext)).toBe(true);
    const decrypts = kms.mock.commandCalls(DecryptCommand);
    expect(decrypts).toHaveLength(1);
    expect(decrypts[0].args[0].input).toStrictEqual({
      CiphertextBlob: Buffer.from(header.encryptedDataKey),
      KeyId: KEY_ARN,
      EncryptionContext: context,
      Recipient: { KeyEncryptionAlgorithm: 'RSAES_OAEP_SHA_256', AttestationDocument: kms.attestationDocument },
    });
  });

  it('sends no EncryptionContext for an artefact sealed without one', async () => {
    const { sealed } = await sealBytes(randomBytes(10), { kms: kms.client, keyId: KEY_ARN });
    await openBytes(sealed, { unwrapDataKey: unwrapWithKmsRecipient(kms.client, recipient), expected: { encryptionContext: {}, keyArn: KEY_ARN } });
    expect(Object.keys(kms.mock.commandCalls(DecryptCommand)[0].args[0].input).sort()).toEqual(['CiphertextBlob', 'KeyId', 'Recipient']);
  });

  it('fails with KMS_CALL when KMS refuses the encrypted data key (changed in the header)', async () => {
    const { sealed } = await sealBytes(randomBytes(10), { kms: kms.client, keyId: KEY_ARN });
    const changed = Buffer.from(sealed);
    changed[15 + 20] ^= 1; // inside the encrypted data key, which starts at offset 15
    const { error } = await openBytes(changed, { unwrapDataKey: unwrapWithKmsRecipient(kms.client, recipient), expected: { encryptionContext: {}, keyArn: KEY_ARN } });
    expect(error).toBeInstanceOf(RuntimeError);
    expect(error).toMatchObject({ code: 'KMS_CALL', reason: expect.stringContaining('InvalidCiphertextException') });
  });

  it('refuses a KMS answer in plaintext (a Recipient dropped on the way)', async () => {
    const { sealed } = await sealBytes(randomBytes(10), { kms: kms.client, keyId: KEY_ARN });
    kms.mock.on(DecryptCommand).resolves({ KeyId: KEY_ARN, Plaintext: randomBytes(32) });
    const { error, plaintext } = await openBytes(sealed, { unwrapDataKey: unwrapWithKmsRecipient(kms.client, recipient), expected: { encryptionContext: {}, keyArn: KEY_ARN } });
    expect(error).toMatchObject({ code: 'KMS_PLAINTEXT_RETURNED' });
    expect(plaintext).toHaveLength(0);
  });
});

describe('open refuses an artefact other than the one expected', () => {
  const open = (sealed: Buffer, expected: Parameters<typeof openBytes>[1]['expected']) => openBytes(sealed, { unwrapDataKey: unwrapWithKmsRecipient(kms.client, recipient), expected });

  it('another artefact, or another version, sealed under the same key: ARTEFACT_MISMATCH, before KMS is asked', async () => {
    const a = await sealBytes(Buffer.from('model A v2'), { kms: kms.client, keyId: KEY_ARN, encryptionContext: { model: 'A', version: '2' } });
    const b = await sealBytes(Buffer.from('model B v1'), { kms: kms.client, keyId: KEY_ARN, encryptionContext: { model: 'B', version: '1' } });
    const older = await sealBytes(Buffer.from('model A v1'), { kms: kms.client, keyId: KEY_ARN, encryptionContext: { model: 'A', version: '1' } });
    const expectA = { encryptionContext: { version: '2', model: 'A' }, keyArn: KEY_ARN }; // order does not matter
    expect((await open(a.sealed, expectA)).plaintext.toString()).toBe('model A v2');
    for (const other of [b.sealed, older.sealed]) {
      kms.mock.resetHistory();
      const { error, plaintext } = await open(other, expectA);
      expect(error).toMatchObject({ code: 'ARTEFACT_MISMATCH', reason: expect.stringContaining('expected {"model":"A","version":"2"}: it is another artefact (or another version) under the same key') });
      expect(plaintext).toHaveLength(0);
      expect(kms.mock.commandCalls(DecryptCommand)).toHaveLength(0);
    }
    // 'any' opens whatever the key opens.
    expect((await open(b.sealed, 'any')).plaintext.toString()).toBe('model B v1');
  });

  it('a context with a pair more or less, and another key than the one expected', async () => {
    const { sealed } = await sealBytes(Buffer.from('x'), { kms: kms.client, keyId: KEY_ARN, encryptionContext: { model: 'A' } });
    expect((await open(sealed, { encryptionContext: {}, keyArn: KEY_ARN })).error).toMatchObject({ code: 'ARTEFACT_MISMATCH' });
    expect((await open(sealed, { encryptionContext: { model: 'A', version: '1' }, keyArn: KEY_ARN })).error).toMatchObject({ code: 'ARTEFACT_MISMATCH' });
    const otherKey = KEY_ARN.replace(/.$/, '1');
    expect((await open(sealed, { encryptionContext: { model: 'A' }, keyArn: otherKey })).error)
      .toMatchObject({ code: 'ARTEFACT_MISMATCH', reason: `the artefact's data key is wrapped by ${KEY_ARN}, expected ${otherKey}` });
    expect((await open(sealed, { encryptionContext: { model: 'A' }, keyArn: KEY_ARN })).error).toBeUndefined();
  });

  // The context is no secret: a model sealed under it with any key the role may decrypt with
  // (Recipient works with ordinary keys too) must not open where the bound key's is expected.
  it('a model sealed under the expected context with another key: ARTEFACT_MISMATCH, before KMS is asked', async () => {
    const otherKey = KEY_ARN.replace(/.$/, '2');
    const context = { model: 'A', version: '2' };
    const { sealed } = await sealBytes(Buffer.from('EVIL MODEL'), { kms: kms.client, keyId: otherKey, encryptionContext: context });
    kms.mock.resetHistory();
    const { error, plaintext } = await open(sealed, { encryptionContext: context, keyArn: KEY_ARN });
    expect(error).toMatchObject({ code: 'ARTEFACT_MISMATCH', reason: `the artefact's data key is wrapped by ${otherKey}, expected ${KEY_ARN}` });
    expect(plaintext).toHaveLength(0);
    expect(kms.mock.commandCalls(DecryptCommand)).toHaveLength(0);
  });
});

describe('egpu artefact seal / open (command functions, KMS mocked)', () => {
  function capture(): CommandIo & { out: string; err: string } {
    const io = { out: '', err: '', stdout: (t: string) => { io.out += t; }, stderr: (t: string) => { io.err += t; } };
    return io;
  }

  async function egpu(...args: string[]) {
    const io = capture();
    const status = await dispatch(ARTEFACT_COMMANDS, args, io);
    return { status, stdout: io.out, stderr: io.err };
  }

  const file = (name: string) => path.join(work, name);
  const keyPem = kms.enclave.privateKey.export({ type: 'pkcs8', format: 'pem' });

  it('seals and opens a file, the opened file readable by its owner only', async () => {
    const plaintext = randomBytes(3 * 1024 * 1024 + 11);
    writeFileSync(file('model.bin'), plaintext);
    writeFileSync(file('enclave.pem'), keyPem);
    writeFileSync(file('doc.b64'), `${kms.attestationDocument.toString('base64').replace(/.{76}/g, '$&\n')}\n`);

    const sealed = await egpu('artefact', 'seal', '--key-id', 'alias/models', '--in', file('model.bin'), '--out', file('model.egpa'),
      '--context', 'artefact=model.bin', '--context', 'stage=prod=blue', '--region', 'eu-west-1');
    expect(sealed.stderr).toBe('');
    expect(sealed.status).toBe(0);
    expect(sealed.stdout).toContain(`4 chunks, data key wrapped by ${KEY_ARN}`);
    expect(kms.mock.commandCalls(EncryptCommand)[0].args[0].input.EncryptionContext).toEqual({ artefact: 'model.bin', stage: 'prod=blue' });

    const opened = await egpu('artefact', 'open', '--in', file('model.egpa'), '--out', file('model.out'),
      '--recipient-key', file('enclave.pem'), '--attestation-doc', file('doc.b64'), '--region', 'eu-west-1',
      '--context', 'stage=prod=blue', '--context', 'artefact=model.bin', '--key-id', KEY_ARN);
    expect(opened.stderr).toBe('');
    expect(opened.status).toBe(0);
    expect(readFileSync(file('model.out')).equals(plaintext)).toBe(true);
    expect(statSync(file('model.out')).mode & 0o777).toBe(0o600);
    expect(kms.mock.commandCalls(DecryptCommand)[0].args[0].input.Recipient?.AttestationDocument).toEqual(kms.attestationDocument);
  });

  it('reads a raw CBOR attestation document too', async () => {
    writeFileSync(file('small.bin'), 'weights');
    writeFileSync(file('enclave.pem'), keyPem);
    writeFileSync(file('doc.cbor'), kms.attestationDocument);
    expect((await egpu('artefact', 'seal', '--key-id', KEY_ARN, '--in', file('small.bin'), '--out', file('small.egpa'))).status).toBe(0);
    const opened = await egpu('artefact', 'open', '--in', file('small.egpa'), '--out', file('small.out'),
      '--recipient-key', file('enclave.pem'), '--attestation-doc', file('doc.cbor'), '--any-artefact');
    expect(opened.status).toBe(0);
    expect(readFileSync(file('small.out'), 'utf8')).toBe('weights');
  });

  it('leaves nothing under --out, not even a partial file, when a chunk fails', async () => {
    writeFileSync(file('big.bin'), randomBytes(2 * 1024 * 1024 + 1));
    writeFileSync(file('enclave.pem'), keyPem);
    writeFileSync(file('doc.cbor'), kms.attestationDocument);
    await egpu('artefact', 'seal', '--key-id', KEY_ARN, '--in', file('big.bin'), '--out', file('big.egpa'));
    const sealed = readFileSync(file('big.egpa'));
    sealed[sealed.length - 5] ^= 1; // in the final chunk's tag: two full chunks authenticate first
    writeFileSync(file('big-tampered.egpa'), sealed);

    const before = readdirSync(work);
    const opened = await egpu('artefact', 'open', '--in', file('big-tampered.egpa'), '--out', file('big.out'),
      '--recipient-key', file('enclave.pem'), '--attestation-doc', file('doc.cbor'), '--any-artefact');
    expect(opened.status).toBe(1);
    expect(opened.stderr).toBe('egpu artefact open: ARTEFACT_AUTH: chunk 2 (final) failed authentication: the artefact was changed, reordered or truncated, or the data key is not its own\n');
    expect(readdirSync(work)).toEqual(before);
  });

  it('exits 1 with the reason when KMS refuses, or the recipient key is not the document\'s', async () => {
    writeFileSync(file('m.bin'), 'weights');
    writeFileSync(file('doc.cbor'), kms.attestationDocument);
    await egpu('artefact', 'seal', '--key-id', KEY_ARN, '--in', file('m.bin'), '--out', file('m.egpa'));

    kms.mock.on(DecryptCommand).rejects(Object.assign(new Error('User is not authorized to perform: kms:Decrypt'), { name: 'AccessDeniedException' }));
    writeFileSync(file('enclave.pem'), keyPem);
    const denied = await egpu('artefact', 'open', '--in', file('m.egpa'), '--out', file('m.out'), '--recipient-key', file('enclave.pem'), '--attestation-doc', file('doc.cbor'), '--any-artefact');
    expect(denied).toMatchObject({ status: 1, stderr: 'egpu artefact open: KMS_CALL: KMS Decrypt failed: AccessDeniedException: User is not authorized to perform: kms:Decrypt\n' });

    kms.mock.reset();
    kms.install();
    const { generateEnclaveKeyPair } = await import('../../src/kms/enclave-keypair');
    writeFileSync(file('other.pem'), generateEnclaveKeyPair().privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const wrongKey = await egpu('artefact', 'open', '--in', file('m.egpa'), '--out', file('m.out'), '--recipient-key', file('other.pem'), '--attestation-doc', file('doc.cbor'), '--any-artefact');
    expect(wrongKey.status).toBe(1);
    expect(wrongKey.stderr).toContain('CMS_DECRYPT');
    expect(() => statSync(file('m.out'))).toThrow();
  });

  it('opens only the artefact named by --context: exits 2 without one, 1 (ARTEFACT_MISMATCH) for another, before asking KMS', async () => {
    writeFileSync(file('v1.bin'), 'weights v1');
    writeFileSync(file('enclave.pem'), keyPem);
    writeFileSync(file('doc.cbor'), kms.attestationDocument);
    await egpu('artefact', 'seal', '--key-id', KEY_ARN, '--in', file('v1.bin'), '--out', file('v1.egpa'), '--context', 'model=m', '--context', 'version=1');
    const common = ['--in', file('v1.egpa'), '--out', file('v1.out'), '--recipient-key', file('enclave.pem'), '--attestation-doc', file('doc.cbor')];
    const none = await egpu('artefact', 'open', ...common);
    expect(none.status).toBe(2);
    expect(none.stderr).toContain('--context is required: give the KEY=VALUE pairs the artefact was sealed with (its name and version), so that no other artefact sealed under the same key opens in its place; --any-artefact skips the check');
    const noKey = await egpu('artefact', 'open', ...common, '--context', 'model=m', '--context', 'version=1');
    expect(noKey.status).toBe(2);
    expect(noKey.stderr).toContain("--key-id is required with --context: give the ARN of the KMS key the artefact was sealed under (your AttestationBoundKey's)");
    const alias = await egpu('artefact', 'open', ...common, '--context', 'model=m', '--context', 'version=1', '--key-id', 'alias/models');
    expect(alias.status).toBe(2);
    expect(alias.stderr).toContain("--key-id must be a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID, as the artefact's header records it), got 'alias/models'");
    common.push('--key-id', KEY_ARN);
    const newer = await egpu('artefact', 'open', ...common, '--context', 'model=m', '--context', 'version=2');
    expect(newer.status).toBe(1);
    expect(newer.stderr).toBe('egpu artefact open: ARTEFACT_MISMATCH: the artefact was sealed with encryption context {"model":"m","version":"1"}, expected {"model":"m","version":"2"}: it is another artefact (or another version) under the same key\n');
    expect(kms.mock.commandCalls(DecryptCommand)).toHaveLength(0);
    expect(() => statSync(file('v1.out'))).toThrow();
    expect((await egpu('artefact', 'open', ...common, '--any-artefact')).status).toBe(2); // with --key-id
    expect((await egpu('artefact', 'open', ...common.slice(0, -2), '--any-artefact', '--context', 'model=m')).status).toBe(2);
    const right = await egpu('artefact', 'open', ...common, '--context', 'version=1', '--context', 'model=m');
    expect(right.status).toBe(0);
    expect(readFileSync(file('v1.out'), 'utf8')).toBe('weights v1');
  });

  it('exits 1 on a missing input before calling KMS, and 2 on a malformed --context', async () => {
    const missing = await egpu('artefact', 'seal', '--key-id', KEY_ARN, '--in', file('nope.bin'), '--out', file('nope.egpa'));
    expect(missing).toMatchObject({ status: 1, stderr: `egpu artefact seal: INPUT: cannot read ${file('nope.bin')}: ENOENT\n` });
    const badContext = await egpu('artefact', 'seal', '--key-id', KEY_ARN, '--in', file('m.bin'), '--out', file('x.egpa'), '--context', 'novalue');
    expect(badContext.status).toBe(2);
    expect(badContext.stderr).toContain("--context must be KEY=VALUE, got 'novalue'");
    const twice = await egpu('artefact', 'seal', '--key-id', KEY_ARN, '--in', file('m.bin'), '--out', file('x.egpa'), '--context', 'a=1', '--context', 'a=2');
    expect(twice.stderr).toContain("--context gives 'a' twice");
    expect(kms.mock.calls()).toHaveLength(0);
  });
});
