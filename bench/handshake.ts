/**
 * Handshake latency: the key agreement alone (two ephemeral P-384 key pairs, two ECDH, two
 * HKDF), the simulated NSM's signing and the verifier's check of one attestation document,
 * and the whole handshake with both.
 */
import { createHash, randomBytes } from 'node:crypto';
import { AttestationCheck, Attester, ContextHandshake, answerHello } from '../assets/gpu-runtime/src/abe/handshake';
import { ImagePcrs } from '../assets/gpu-runtime/src/abe/key-schedule';
import { SimulatedNsm } from '../assets/gpu-runtime/src/attestation/simulated-nsm';
import { verifyAttestationDocument } from '../assets/gpu-runtime/src/attestation/verify';
import { latency } from './timing';

const sha384 = (text: string) => createHash('sha384').update(text).digest();
const pcrs: ImagePcrs = [sha384('PCR0'), sha384('PCR1'), sha384('PCR2')];
const pcrMap = { 0: pcrs[0].toString('hex'), 1: pcrs[1].toString('hex'), 2: pcrs[2].toString('hex') };

export interface HandshakeLatency {
  readonly keyAgreement: { medianMs: number; minMs: number };
  readonly attest: { medianMs: number; minMs: number };
  readonly verify: { medianMs: number; minMs: number };
  readonly full: { medianMs: number; minMs: number };
}

async function handshake(attester: Attester, check: AttestationCheck): Promise<void> {
  const context = ContextHandshake.start();
  const { reply } = await answerHello(context.hello, { attester, pcrs });
  await context.finish(reply, check);
}

export async function handshakeLatency(calls: number): Promise<HandshakeLatency> {
  // No attestation: the "document" is the enclave's public key itself, passed straight through.
  const passThrough: Attester = { attest: ({ userData }) => userData };
  const trustAll: AttestationCheck = (doc) => ({ pcrs: pcrMap, userData: doc });

  const nsm = SimulatedNsm.create();
  const attester: Attester = { attest: (request) => nsm.attest({ pcrs: pcrMap, ...request }) };
  const verifier: AttestationCheck = (doc, expectedNonce) => verifyAttestationDocument(doc, { root: nsm.rootCertificate, expectedNonce, expectedPcrs: pcrMap });
  const nonce = randomBytes(32);
  const document = nsm.attest({ pcrs: pcrMap, nonce, userData: randomBytes(97), publicKey: randomBytes(294) });

  return {
    keyAgreement: await latency(calls, () => handshake(passThrough, trustAll)),
    attest: await latency(calls, () => nsm.attest({ pcrs: pcrMap, nonce, userData: randomBytes(97), publicKey: randomBytes(294) })),
    verify: await latency(calls, () => verifier(document, nonce)),
    full: await latency(calls, () => handshake(attester, verifier)),
  };
}
