/**
 * The NSM device layer without a device: request bytes against hand-computed CBOR, strict
 * response decoding, and the attester end to end through an injected transport that answers
 * as the NSM does, with documents the simulated NSM signs, so the production verifier and a
 * real ContextHandshake accept them. NSM_UNAVAILABLE on a path that does not exist. The
 * addon and the system calls are test/attestation/nsm-addon.test.ts's.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CborValue, decodeCbor, encodeCbor } from '../../../../lib/shared/cbor';
import { ENCLAVE_TO_HOST, HOST_TO_ENCLAVE } from '../../src/abe/frame-header';
import { ContextHandshake, answerHello } from '../../src/abe/handshake';
import { decodeContextHello, decodeEnclaveReply, encodeContextHello, encodeEnclaveReply } from '../../src/abe/handshake-messages';
import { ImagePcrs } from '../../src/abe/key-schedule';
import { parseAttestationDocument } from '../../src/attestation/document';
import {
  NSM_DEVICE_PATH, NsmDevice, NsmError, NsmTransport, decodeAttestationResponse, decodeDescribePcrResponse,
  deviceEnclave, encodeAttestationRequest, encodeDescribePcrRequest, isDebugMode,
} from '../../src/attestation/nsm-device';
import { SimulatedNsm } from '../../src/attestation/simulated-nsm';
import { verifyAttestationDocument } from '../../src/attestation/verify';
import { asyncRefusal, refusal } from '../refusal';
import { AWS_DOCUMENT } from './helpers';

// Text strings as CBOR, by hand: head 0x60 + length, then the ASCII bytes.
const T = {
  Attestation: '6b4174746573746174696f6e',
  user_data: '69757365725f64617461',
  nonce: '656e6f6e6365',
  public_key: '6a7075626c69635f6b6579',
  DescribePCR: '6b4465736372696265504352',
  index: '65696e646578',
  document: '68646f63756d656e74',
  lock: '646c6f636b',
  data: '6464617461',
  Error: '654572726f72',
};
const hex = (text: string) => Buffer.from(text.replace(/\s+/g, ''), 'hex');

/** The NsmError `action` throws (sync), checked for code. */
function nsmRefusal(action: () => unknown, code: string): NsmError {
  const error = refusal(action);
  expect(error).toBeInstanceOf(NsmError);
  expect(error.code).toBe(code);
  return error as NsmError;
}

/** The NsmError `action` rejects with, checked for code. */
async function asyncNsmRefusal(action: () => Promise<unknown>, code: string): Promise<NsmError> {
  const error = await asyncRefusal(action, NsmError);
  expect(error.code).toBe(code);
  return error;
}

describe('NSM requests, byte for byte', () => {
  it('encodes an Attestation with nothing asked as three nulls, in the order serde writes the fields', () => {
    expect(encodeAttestationRequest({}).toString('hex')).toBe(
      `a1 ${T.Attestation} a3 ${T.user_data} f6 ${T.nonce} f6 ${T.public_key} f6`.replace(/ /g, ''));
  });

  it('encodes the given fields as byte strings and the others as null', () => {
    expect(encodeAttestationRequest({ userData: hex('0102'), nonce: hex('aa') }).toString('hex')).toBe(
      `a1 ${T.Attestation} a3 ${T.user_data} 42 0102 ${T.nonce} 41 aa ${T.public_key} f6`.replace(/ /g, ''));
    expect(encodeAttestationRequest({ publicKey: hex('dead') }).toString('hex')).toBe(
      `a1 ${T.Attestation} a3 ${T.user_data} f6 ${T.nonce} f6 ${T.public_key} 42 dead`.replace(/ /g, ''));
  });

  it('encodes the handshake\'s sizes with one- and two-byte length heads', () => {
    const nonce = Buffer.alloc(32, 0x11);
    const userData = Buffer.alloc(97, 0x04);
    const publicKey = Buffer.alloc(294, 0x30);
    const expected = hex(`a1 ${T.Attestation} a3 ${T.user_data} 5861`).toString('hex') + userData.toString('hex')
      + hex(`${T.nonce} 5820`).toString('hex') + nonce.toString('hex')
      + hex(`${T.public_key} 590126`).toString('hex') + publicKey.toString('hex');
    expect(encodeAttestationRequest({ nonce, userData, publicKey }).toString('hex')).toBe(expected);
  });

  it('encodes DescribePCR with the index in its shortest head', () => {
    const describe = (index: string) => `a1 ${T.DescribePCR} a1 ${T.index} ${index}`.replace(/ /g, '');
    expect(encodeDescribePcrRequest(0).toString('hex')).toBe(describe('00'));
    expect(encodeDescribePcrRequest(2).toString('hex')).toBe(describe('02'));
    expect(encodeDescribePcrRequest(23).toString('hex')).toBe(describe('17'));
    expect(encodeDescribePcrRequest(24).toString('hex')).toBe(describe('1818'));
    expect(encodeDescribePcrRequest(65535).toString('hex')).toBe(describe('19ffff'));
  });

  it('refuses what the NSM API cannot carry, naming the request and the field', () => {
    for (const index of [-1, 65536, 1.5, Number.NaN]) {
      expect(nsmRefusal(() => encodeDescribePcrRequest(index), 'NSM_INVALID_ARGUMENT').request).toBe('DescribePCR');
    }
    const tooLong = nsmRefusal(() => encodeAttestationRequest({ userData: Buffer.alloc(513) }), 'NSM_TOO_LARGE');
    expect(tooLong).toMatchObject({ request: 'Attestation' });
    expect(tooLong.reason).toMatch(/^Attestation: user_data is 513 bytes, the NSM takes at most 512$/);
    expect(nsmRefusal(() => encodeAttestationRequest({ nonce: Buffer.alloc(513) }), 'NSM_TOO_LARGE').reason).toMatch(/nonce is 513 bytes/);
    expect(nsmRefusal(() => encodeAttestationRequest({ publicKey: Buffer.alloc(1025) }), 'NSM_TOO_LARGE').reason).toMatch(/public_key is 1025 bytes/);
    // At the NSM's limits every field fits, and the whole request stays under 4096 bytes.
    expect(encodeAttestationRequest({ userData: Buffer.alloc(512), nonce: Buffer.alloc(512), publicKey: Buffer.alloc(1024) }).length).toBeLessThan(4096);
    nsmRefusal(() => encodeAttestationRequest({ nonce: 'abc' as unknown as Buffer }), 'NSM_INVALID_ARGUMENT');
  });
});

describe('NSM responses, strictly', () => {
  const pcr = Buffer.alloc(48, 0xab);
  const describeResponse = hex(`a1 ${T.DescribePCR} a2 ${T.lock} f5 ${T.data} 5830`).toString('hex') + pcr.toString('hex');

  it('decodes a DescribePCR response', () => {
    expect(decodeDescribePcrResponse(Buffer.from(describeResponse, 'hex'))).toEqual({ lock: true, data: pcr });
    // Keys in the other order are the same map.
    const swapped = Buffer.concat([hex(`a1 ${T.DescribePCR} a2 ${T.data} 5830`), pcr, hex(`${T.lock} f4`)]);
    expect(decodeDescribePcrResponse(swapped)).toEqual({ lock: false, data: pcr });
  });

  it('decodes an Attestation response to its document', () => {
    const response = Buffer.concat([hex(`a1 ${T.Attestation} a1 ${T.document} 43`), hex('010203')]);
    expect(decodeAttestationResponse(response)).toEqual(hex('010203'));
    // The real AWS document, wrapped as the NSM wraps it.
    const wrapped = encodeCbor(new Map([['Attestation', new Map([['document', AWS_DOCUMENT]])]]));
    expect(decodeAttestationResponse(wrapped).equals(AWS_DOCUMENT)).toBe(true);
  });

  it('turns the Error variant into a typed refusal naming the request and the NSM error', () => {
    const invalidIndex = hex(`a1 ${T.Error} 6c 496e76616c6964496e646578`);
    const error = nsmRefusal(() => decodeDescribePcrResponse(invalidIndex), 'NSM_REFUSED');
    expect(error).toMatchObject({ request: 'DescribePCR', nsmError: 'InvalidIndex' });
    expect(error.reason).toBe('DescribePCR: the NSM answered InvalidIndex');
    const errorResponse = (name: string) => encodeCbor(new Map([['Error', name]]));
    expect(nsmRefusal(() => decodeAttestationResponse(errorResponse('InvalidArgument')), 'NSM_REFUSED'))
      .toMatchObject({ request: 'Attestation', nsmError: 'InvalidArgument' });
    expect(nsmRefusal(() => decodeAttestationResponse(errorResponse('InternalError')), 'NSM_REFUSED').reason).toBe('Attestation: the NSM answered InternalError');
    expect(nsmRefusal(() => decodeAttestationResponse(errorResponse('InputTooLarge')), 'NSM_TOO_LARGE'))
      .toMatchObject({ request: 'Attestation', nsmError: 'InputTooLarge' });
    // A name from a newer NSM is still the NSM's refusal, said to be unknown here.
    expect(nsmRefusal(() => decodeAttestationResponse(errorResponse('Overheated')), 'NSM_REFUSED').reason).toMatch(/Overheated \(not an ErrorCode this runtime knows\)/);
    // Anything else under Error is not an ErrorCode at all.
    for (const body of [1, null, 'Invalid Argument', 'x'.repeat(65), new Map([['code', 'InvalidArgument']])] as CborValue[]) {
      nsmRefusal(() => decodeAttestationResponse(encodeCbor(new Map([['Error', body]]))), 'NSM_MALFORMED');
    }
  });

  const malformed: Array<[string, Buffer]> = [
    ['empty', Buffer.alloc(0)],
    ['not CBOR', hex('ff')],
    ['truncated by one byte', Buffer.from(describeResponse.slice(0, -2), 'hex')],
    ['followed by a byte', Buffer.concat([Buffer.from(describeResponse, 'hex'), hex('00')])],
    ['an array', hex(`81 ${T.DescribePCR}`)],
    ['a bare text (a unit variant)', hex(T.DescribePCR)],
    ['a map of two entries', encodeCbor(new Map<string, CborValue>([['DescribePCR', new Map<string, CborValue>([['lock', true], ['data', pcr]])], ['Error', 'InternalError']]))],
    ['an empty map', hex('a0')],
    ['a duplicated variant', Buffer.concat([hex(`a2 ${T.Error} 6d`), Buffer.from('InternalError'), hex(T.Error), hex('6d'), Buffer.from('InternalError')])],
    ['another request\'s variant', encodeCbor(new Map([['Attestation', new Map([['document', hex('01')]])]]))],
    ['an integer key', encodeCbor(new Map<CborValue, CborValue>([[1, new Map<string, CborValue>([['lock', true], ['data', pcr]])]]))],
    ['a body that is not a map', hex(`a1 ${T.DescribePCR} f6`)],
    ['an extra key', encodeCbor(new Map([['DescribePCR', new Map<string, CborValue>([['lock', true], ['data', pcr], ['extra', 0]])]]))],
    ['a missing key', encodeCbor(new Map([['DescribePCR', new Map<string, CborValue>([['data', pcr]])]]))],
    ['lock as an integer', encodeCbor(new Map([['DescribePCR', new Map<string, CborValue>([['lock', 1], ['data', pcr]])]]))],
    ['data as text', encodeCbor(new Map([['DescribePCR', new Map<string, CborValue>([['lock', true], ['data', 'ab'.repeat(48)]])]]))],
    ['data of 47 bytes', encodeCbor(new Map([['DescribePCR', new Map<string, CborValue>([['lock', true], ['data', Buffer.alloc(47)]])]]))],
    ['more than 0x3000 bytes', Buffer.concat([Buffer.from(describeResponse, 'hex'), Buffer.alloc(0x3000)])],
  ];
  it.each(malformed)('refuses a DescribePCR response that is %s', (_what, bytes) => {
    expect(nsmRefusal(() => decodeDescribePcrResponse(bytes), 'NSM_MALFORMED').reason).toMatch(/^DescribePCR: /);
  });

  it('refuses an Attestation response whose document is missing, empty or not bytes', () => {
    const response = (body: Map<string, CborValue>) => encodeCbor(new Map([['Attestation', body]]));
    for (const body of [new Map(), new Map([['document', Buffer.alloc(0)]]), new Map([['document', 'text']]), new Map([['document', [hex('01')]]]),
      new Map<string, CborValue>([['document', hex('01')], ['signature', hex('02')]])]) {
      expect(nsmRefusal(() => decodeAttestationResponse(response(body)), 'NSM_MALFORMED').request).toBe('Attestation');
    }
  });
});

/**
 * An NSM as a transport: it decodes each request exactly as the NSM would read it and answers
 * with a document from the simulated NSM (for this image's PCRs) or a PCR.
 */
function simulatedTransport(nsm: SimulatedNsm, pcrs: ImagePcrs, log: Buffer[] = []): NsmTransport {
  return async (request) => {
    log.push(request);
    const value = decodeCbor(request) as Map<string, Map<string, CborValue>>;
    const [[variant, body]] = [...value];
    if (variant === 'Attestation') {
      expect([...body.keys()]).toEqual(['user_data', 'nonce', 'public_key']);
      const field = (key: string) => (body.get(key) === null ? undefined : body.get(key) as Buffer);
      const document = nsm.attest({ pcrs: { 0: pcrs[0], 1: pcrs[1], 2: pcrs[2] }, userData: field('user_data'), nonce: field('nonce'), publicKey: field('public_key') });
      return encodeCbor(new Map([['Attestation', new Map([['document', document]])]]));
    }
    if (variant === 'DescribePCR') {
      const index = body.get('index') as number;
      if (index > 31) return encodeCbor(new Map([['Error', 'InvalidIndex']]));
      return encodeCbor(new Map([['DescribePCR', new Map<string, CborValue>([['lock', index < 16], ['data', pcrs[index] ?? Buffer.alloc(48)]])]]));
    }
    return encodeCbor(new Map([['Error', 'InvalidOperation']]));
  };
}

describe('the NSM device as the enclave\'s attester', () => {
  const simulated = SimulatedNsm.create();
  const imagePcrs: ImagePcrs = [sha384('image'), sha384('kernel'), sha384('application')];
  const expectedPcrs = { 0: imagePcrs[0].toString('hex'), 1: imagePcrs[1].toString('hex'), 2: imagePcrs[2].toString('hex') };

  it('reads PCR0-2 with DescribePCR, one request each', async () => {
    const log: Buffer[] = [];
    const device = NsmDevice.withTransport(simulatedTransport(simulated, imagePcrs, log));
    expect(await device.imagePcrs()).toEqual(imagePcrs);
    expect(log.map((request) => request.toString('hex'))).toEqual([0, 1, 2].map((index) => encodeDescribePcrRequest(index).toString('hex')));
    expect(await device.describePcr(20)).toEqual({ lock: false, data: Buffer.alloc(48) });
    expect(await asyncNsmRefusal(() => device.describePcr(40), 'NSM_REFUSED')).toMatchObject({ request: 'DescribePCR', nsmError: 'InvalidIndex' });
  });

  it('completes a real handshake: the context verifies the document and both sides share a session', async () => {
    const publicKey = randomBytes(294);
    const enclave = await deviceEnclave(NsmDevice.withTransport(simulatedTransport(simulated, imagePcrs)), publicKey);
    expect(enclave.pcrs).toEqual(imagePcrs);
    const start = ContextHandshake.start();
    const { reply, session: enclaveSession } = await answerHello(decodeContextHello(encodeContextHello(start.hello)), enclave);
    const check = (doc: Buffer, expectedNonce: Buffer) => {
      const verified = verifyAttestationDocument(doc, { root: simulated.rootCertificate, expectedNonce, expectedPcrs });
      expect(verified.publicKey?.equals(publicKey)).toBe(true);
      return verified;
    };
    const contextSession = await start.finish(decodeEnclaveReply(encodeEnclaveReply(reply)), check);
    const digest = sha384('relu');
    const plaintext = randomBytes(1000);
    const up = enclaveSession.sealer(1, ENCLAVE_TO_HOST, digest).seal(0, plaintext, true);
    expect(contextSession.opener(1, ENCLAVE_TO_HOST, digest).open(up).plaintext.equals(plaintext)).toBe(true);
    const down = contextSession.sealer(1, HOST_TO_ENCLAVE, digest).seal(0, plaintext, true);
    expect(enclaveSession.opener(1, HOST_TO_ENCLAVE, digest).open(down).plaintext.equals(plaintext)).toBe(true);
  });

  it('is refused by a verifier that pins the AWS root (a simulated document is never genuine)', async () => {
    const device = NsmDevice.withTransport(simulatedTransport(simulated, imagePcrs));
    const document = await device.attest({ nonce: randomBytes(32), userData: randomBytes(97) });
    expect(() => verifyAttestationDocument(document)).toThrow(/ROOT_MISMATCH/);
  });

  it('passes the real AWS document through when it carries what was asked', async () => {
    const aws = parseAttestationDocument(AWS_DOCUMENT);
    const device = NsmDevice.withTransport(async () => encodeCbor(new Map([['Attestation', new Map([['document', AWS_DOCUMENT]])]])));
    const document = await device.attest({ nonce: aws.nonce, userData: aws.userData, publicKey: aws.publicKey });
    expect(document.equals(AWS_DOCUMENT)).toBe(true);
  });

  it('refuses a document that does not carry the nonce, user_data or public_key asked for', async () => {
    const nonce = randomBytes(32);
    const userData = randomBytes(97);
    const answering = (change: (request: { nonce?: Buffer; userData?: Buffer; publicKey?: Buffer }) => void) => NsmDevice.withTransport(async (request) => {
      const body = (decodeCbor(request) as Map<string, Map<string, CborValue>>).get('Attestation')!;
      const fields = { nonce: body.get('nonce') as Buffer, userData: body.get('user_data') as Buffer, publicKey: undefined as Buffer | undefined };
      change(fields);
      const document = simulated.attest({ pcrs: expectedPcrs, ...fields });
      return encodeCbor(new Map([['Attestation', new Map([['document', document]])]]));
    });
    const cases: Array<[string, (fields: { nonce?: Buffer; userData?: Buffer; publicKey?: Buffer }) => void]> = [
      ['nonce', (fields) => { fields.nonce = randomBytes(32); }],
      ['nonce', (fields) => { fields.nonce = undefined; }],
      ['user_data', (fields) => { fields.userData = randomBytes(97); }],
      ['public_key', (fields) => { fields.publicKey = randomBytes(10); }],
    ];
    for (const [field, change] of cases) {
      const error = await asyncNsmRefusal(() => answering(change).attest({ nonce, userData }), 'NSM_MALFORMED');
      expect(error.reason).toBe(`Attestation: the document's ${field} is not the one requested`);
    }
  });

  it('refuses a document that does not parse, or a response that is not one', async () => {
    const garbage = NsmDevice.withTransport(async () => encodeCbor(new Map([['Attestation', new Map([['document', randomBytes(100)]])]])));
    expect((await asyncNsmRefusal(() => garbage.attest({ nonce: randomBytes(32) }), 'NSM_MALFORMED')).reason).toMatch(/^Attestation: the document does not parse: MALFORMED: /);
    const notBytes = NsmDevice.withTransport(async () => 'document' as unknown as Buffer);
    await asyncNsmRefusal(() => notBytes.attest({}), 'NSM_MALFORMED');
    const shortPcr = NsmDevice.withTransport(async () => encodeCbor(new Map([['DescribePCR', new Map<string, CborValue>([['lock', true], ['data', Buffer.alloc(32)]])]])));
    expect((await asyncNsmRefusal(() => shortPcr.imagePcrs(), 'NSM_MALFORMED')).reason).toMatch(/PCR0 is 32 bytes/);
  });

  it('types a transport\'s failures: the device gone, too large, and any other errno', async () => {
    const failing = (error: Error) => NsmDevice.withTransport(async () => { throw error; }, '/dev/nsm');
    const errno = (code: string, syscall: string) => Object.assign(new Error(`${syscall} /dev/nsm: ${code}`), { code, syscall });
    const gone = await asyncNsmRefusal(() => failing(errno('ENOENT', 'open')).describePcr(0), 'NSM_UNAVAILABLE');
    expect(gone).toMatchObject({ request: 'DescribePCR', errno: 'ENOENT' });
    expect(gone.reason).toMatch(/run inside a Nitro Enclave, or use --nsm-state for local mode/);
    await asyncNsmRefusal(() => failing(errno('ENODEV', 'open')).describePcr(0), 'NSM_UNAVAILABLE');
    expect(await asyncNsmRefusal(() => failing(errno('EMSGSIZE', 'ioctl')).attest({}), 'NSM_TOO_LARGE')).toMatchObject({ request: 'Attestation', errno: 'EMSGSIZE' });
    const timeout = await asyncNsmRefusal(() => failing(errno('ETIMEDOUT', 'ioctl')).attest({}), 'NSM_IO');
    expect(timeout).toMatchObject({ request: 'Attestation', errno: 'ETIMEDOUT' });
    expect(timeout.reason).toMatch(/^Attestation on \/dev\/nsm failed: ETIMEDOUT: /);
    await asyncNsmRefusal(() => failing(new Error('no code')).attest({}), 'NSM_IO');
  });

  it('tells a debug-mode enclave (PCR0-2 zero) from a measured one', () => {
    expect(isDebugMode([Buffer.alloc(48), Buffer.alloc(48), Buffer.alloc(48)])).toBe(true);
    expect(isDebugMode(imagePcrs)).toBe(false);
  });
});

describe('NSM_UNAVAILABLE', () => {
  const scratch = mkdtempSync(path.join(tmpdir(), 'egpu-nsm-test-'));
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  it('when the device path does not exist, with the fix', () => {
    const missing = path.join(scratch, 'no-such-dir', 'nsm');
    expect(existsSync(missing)).toBe(false);
    const error = nsmRefusal(() => NsmDevice.open({ path: missing, loader: () => { throw new Error('the addon must not be loaded'); } }), 'NSM_UNAVAILABLE');
    expect(error.reason).toBe(`${missing} does not exist (there is a Nitro Secure Module only inside a Nitro Enclave): run inside a Nitro Enclave, or use --nsm-state for local mode`);
  });

  // Only where this machine has no NSM: the check is a stat of the path; nothing is opened.
  it.skipIf(existsSync(NSM_DEVICE_PATH))('for the default /dev/nsm on a machine that has none', () => {
    expect(nsmRefusal(() => NsmDevice.open(), 'NSM_UNAVAILABLE').reason).toMatch(/^\/dev\/nsm does not exist/);
  });

  it('when the addon was not built', () => {
    const file = path.join(scratch, 'present');
    writeFileSync(file, '');
    const error = nsmRefusal(() => NsmDevice.open({ path: file, loader: () => undefined }), 'NSM_UNAVAILABLE');
    expect(error.reason).toMatch(/dist\/nsm\.node was not built .*: run inside a Nitro Enclave, or use --nsm-state for local mode$/);
  });
});

function sha384(text: string): Buffer {
  return createHash('sha384').update(text).digest();
}
