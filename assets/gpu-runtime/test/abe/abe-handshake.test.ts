/**
 * The handshake end to end with the real attestation code: the simulated NSM signs the
 * enclave's document, the production verifier checks it against the simulated root with the
 * expected PCRs and the hello's nonce.
 */
import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { SimulatedNsm } from '../../src/attestation/simulated-nsm';
import { verifyAttestationDocument } from '../../src/attestation/verify';
import { ENCLAVE_TO_HOST } from '../../src/abe/frame-header';
import { AttestationCheck, Attester, ContextHandshake, answerHello } from '../../src/abe/handshake';
import { encodeCbor } from '../../../../lib/shared/cbor';
import { decodeContextHello, decodeEnclaveReply, encodeContextHello, encodeEnclaveReply } from '../../src/abe/handshake-messages';
import { ImagePcrs } from '../../src/abe/key-schedule';
import { MAX_ATTESTATION_BYTES } from '../../src/abe/limits';
import { AbeSession } from '../../src/abe/session';
import { asyncRefusal, refusal } from './helpers';

const nsm = SimulatedNsm.create();
const imagePcrs: ImagePcrs = [sha384('image'), sha384('kernel'), sha384('application')];
const expectedPcrs = { 0: imagePcrs[0].toString('hex'), 1: imagePcrs[1].toString('hex'), 2: imagePcrs[2].toString('hex') };

/** The enclave's NSM: documents carry this image's PCRs (or others, to test refusals). */
function attester(pcrs: ImagePcrs = imagePcrs, tamper: (request: { nonce: Buffer; userData: Buffer }) => void = () => {}): Attester {
  return {
    attest(request) {
      const userData = Buffer.from(request.userData);
      const nonce = Buffer.from(request.nonce);
      tamper({ nonce, userData });
      return nsm.attest({ pcrs: { 0: pcrs[0], 1: pcrs[1], 2: pcrs[2] }, publicKey: request.publicKey, userData, nonce });
    },
  };
}

/** The context's check: the verifier with the simulated root pinned and this image's PCRs expected. */
const check: AttestationCheck = (doc, expectedNonce) => verifyAttestationDocument(doc, { root: nsm.rootCertificate, expectedNonce, expectedPcrs });

async function handshake(enclaveAttester = attester()): Promise<{ context: AbeSession; enclave: AbeSession }> {
  const start = ContextHandshake.start();
  // Both messages cross SGS as bytes.
  const hello = decodeContextHello(encodeContextHello(start.hello));
  const { reply, session: enclave } = await answerHello(hello, { attester: enclaveAttester, pcrs: imagePcrs, publicKey: randomBytes(294) });
  const context = await start.finish(decodeEnclaveReply(encodeEnclaveReply(reply)), check);
  return { context, enclave };
}

describe('the handshake with the simulated NSM and the real verifier', () => {
  it('gives both sides the same session: a frame sealed by one opens at the other', async () => {
    const { context, enclave } = await handshake();
    expect(context.sessionId.equals(enclave.sessionId)).toBe(true);
    const digest = sha384('relu');
    const plaintext = randomBytes(4096);
    const frame = enclave.sealer(1, ENCLAVE_TO_HOST, digest).seal(0, plaintext, true);
    expect(context.opener(1, ENCLAVE_TO_HOST, digest).open(frame).plaintext.equals(plaintext)).toBe(true);
  });

  it('gives a fresh session id, nonce and key pair every time', () => {
    const [a, b] = [ContextHandshake.start().hello, ContextHandshake.start().hello];
    expect(a.sessionId.equals(b.sessionId) || a.nonce.equals(b.nonce) || a.contextPublicKey.equals(b.contextPublicKey)).toBe(false);
  });

  it('refuses a document for another nonce (a replayed attestation)', async () => {
    const reason = await asyncRefusal(() => handshake(attester(imagePcrs, ({ nonce }) => nonce.fill(0))), 'NONCE_MISMATCH', 'AttestationError');
    expect(reason).toMatch(/nonce is 0000/);
  });

  it('refuses an enclave running another image (PCRs differ from the expected ones)', async () => {
    const reason = await asyncRefusal(() => handshake(attester([imagePcrs[0], sha384('another kernel'), imagePcrs[2]])), 'PCR_MISMATCH', 'AttestationError');
    expect(reason).toMatch(/^PCR1 is /);
  });

  it('refuses user_data that is not a P-384 point', async () => {
    await asyncRefusal(() => handshake(attester(imagePcrs, ({ userData }) => { userData[96] ^= 0x01; })), 'INVALID_PUBLIC_KEY');
    await asyncRefusal(() => handshake(attester(imagePcrs, ({ userData }) => { userData[0] = 0x02; })), 'INVALID_PUBLIC_KEY');
  });

  it('derives different keys when the enclave claims other PCRs than it attests', async () => {
    const start = ContextHandshake.start();
    const { reply, session: enclave } = await answerHello(start.hello, { attester: attester(), pcrs: [sha384('x'), imagePcrs[1], imagePcrs[2]] });
    const context = await start.finish(reply, check);
    const digest = sha384('relu');
    const frame = enclave.sealer(1, ENCLAVE_TO_HOST, digest).seal(0, randomBytes(16), true);
    refusal(() => context.opener(1, ENCLAVE_TO_HOST, digest).open(frame), 'AUTH_FAILED');
  });

  it('refuses a reply for another session, and a second finish', async () => {
    const start = ContextHandshake.start();
    const { reply } = await answerHello(start.hello, { attester: attester(), pcrs: imagePcrs });
    await asyncRefusal(() => start.finish({ ...reply, sessionId: randomBytes(16) }, check), 'WRONG_SESSION');
    await asyncRefusal(() => start.finish(reply, check), 'CLOSED');
  });

  it('refuses a check result without PCR0-2 or without user_data', async () => {
    const start = () => ContextHandshake.start();
    const reply = async (s: ContextHandshake) => (await answerHello(s.hello, { attester: attester(), pcrs: imagePcrs })).reply;
    const a = start();
    await asyncRefusal(async () => a.finish(await reply(a), () => ({ pcrs: { 0: expectedPcrs[0], 1: expectedPcrs[1] }, userData: randomBytes(97) })), 'INVALID_PCR');
    const b = start();
    await asyncRefusal(async () => b.finish(await reply(b), () => ({ pcrs: expectedPcrs })), 'INVALID_PUBLIC_KEY');
  });

  it('the enclave refuses a hello whose public key is not a P-384 point', async () => {
    const hello = { ...ContextHandshake.start().hello };
    const contextPublicKey = Buffer.from(hello.contextPublicKey);
    contextPublicKey[50] ^= 0x01;
    await asyncRefusal(() => answerHello({ ...hello, contextPublicKey }, { attester: attester(), pcrs: imagePcrs }), 'INVALID_PUBLIC_KEY');
  });
});

describe('handshake messages', () => {
  it('round-trip through CBOR', () => {
    const hello = ContextHandshake.start().hello;
    expect(decodeContextHello(encodeContextHello(hello))).toEqual(hello);
    const reply = { sessionId: randomBytes(16), attestationDocument: randomBytes(4500) };
    expect(decodeEnclaveReply(encodeEnclaveReply(reply))).toEqual(reply);
  });

  it('refuse wrong field sizes, extra fields, oversized documents and other versions', () => {
    const hello = ContextHandshake.start().hello;
    refusal(() => encodeContextHello({ ...hello, nonce: randomBytes(31) }), 'MALFORMED');
    const withExtra = Buffer.concat([Buffer.of(0xa5), encodeContextHello(hello).subarray(1), Buffer.from([0x61, 0x78, 0x00])]);
    refusal(() => decodeContextHello(withExtra), 'MALFORMED');
    refusal(() => decodeContextHello(Buffer.of(0x01)), 'MALFORMED');
    refusal(() => encodeEnclaveReply({ sessionId: randomBytes(16), attestationDocument: Buffer.alloc(MAX_ATTESTATION_BYTES + 1) }), 'TOO_LARGE');
    refusal(() => decodeEnclaveReply(Buffer.alloc(MAX_ATTESTATION_BYTES + 1000)), 'TOO_LARGE');
    const v2 = encodeContextHello(hello);
    v2[3] = 0x02; // a4 61 76 01: map of 4, "v", 1
    expect(refusal(() => decodeContextHello(v2), 'MALFORMED')).toMatch(/version must be 1/);
  });

  it('accept one encoding only: keys in order, shortest-form heads', () => {
    const hello = ContextHandshake.start().hello;
    const entries: Array<[string, number | Buffer]> = [['v', 1], ['session', hello.sessionId], ['nonce', hello.nonce], ['publicKey', hello.contextPublicKey]];
    expect(encodeCbor(new Map(entries)).equals(encodeContextHello(hello))).toBe(true);
    const reordered = encodeCbor(new Map([entries[1], entries[0], entries[2], entries[3]]));
    expect(refusal(() => decodeContextHello(reordered), 'MALFORMED')).toMatch(/context hello: not in its one accepted encoding/);
    // The 97-byte key with a two-byte length head (59 00 61) instead of the one-byte one (58 61).
    const canonical = encodeContextHello(hello);
    const keyAt = canonical.indexOf(Buffer.concat([Buffer.of(0x58, 0x61), hello.contextPublicKey]));
    expect(keyAt).toBeGreaterThan(0);
    const longHead = Buffer.concat([canonical.subarray(0, keyAt), Buffer.of(0x59, 0x00, 0x61), canonical.subarray(keyAt + 2)]);
    refusal(() => decodeContextHello(longHead), 'MALFORMED');
    const reply = { sessionId: randomBytes(16), attestationDocument: randomBytes(300) };
    const replyReordered = encodeCbor(new Map<string, number | Buffer>([['session', reply.sessionId], ['v', 1], ['attestation', reply.attestationDocument]]));
    expect(refusal(() => decodeEnclaveReply(replyReordered), 'MALFORMED')).toMatch(/enclave reply: not in its one accepted encoding/);
  });
});

function sha384(text: string): Buffer {
  return createHash('sha384').update(text).digest();
}
