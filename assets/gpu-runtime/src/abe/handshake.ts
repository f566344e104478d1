/**
 * The ABE v1 handshake (ABE.md, "Handshake"), relayed by SGS:
 *
 *   context -> enclave   hello { session id, nonce, context ECDH public key }
 *   enclave -> context   reply { session id, attestation document (nonce = hello's nonce,
 *                                 user_data = enclave ECDH public key, public_key = its RSA key for KMS) }
 *
 * Both sides then derive the same session key (key-schedule.ts). The context learns the
 * enclave's key and PCRs only from a document that passed its AttestationCheck, so a
 * session key exists only with an enclave running the expected image. The enclave, in turn,
 * does not authenticate the context: ABE.md, "What the handshake proves", says what follows.
 *
 * Attestation is injected: the enclave side gets an Attester (NSM, or the simulated NSM in
 * local mode), the context side an AttestationCheck (the document verifier, with the pinned
 * root, the expected PCRs and the hello's nonce).
 */
import { randomBytes, type ECDH } from 'node:crypto';
import { AesGcmBackend } from './aes-gcm';
import { AbeError } from './errors';
import { ContextHello, EnclaveReply, HELLO_NONCE_BYTES, checkContextHello, checkEnclaveReply } from './handshake-messages';
import { ImagePcrs, PCR_BYTES, SESSION_ID_BYTES, createEcdhKeyPair, deriveSessionKey, ecdhSharedSecret, publicKeyOf } from './key-schedule';
import { AbeSession } from './session';

export interface AttestationRequest {
  readonly nonce: Buffer;
  /** The enclave's ECDH P-384 public key, SEC1 uncompressed. */
  readonly userData: Buffer;
  /** The enclave's RSA public key (DER) that KMS encrypts Recipient responses to, if any. */
  readonly publicKey?: Buffer;
}

/** Produces an attestation document (COSE_Sign1 bytes) for the request. */
export interface Attester {
  attest(request: AttestationRequest): Promise<Buffer> | Buffer;
}

/** What a verified document attests: its PCRs (hex, by index) and user_data. */
export interface AttestedIdentity {
  readonly pcrs: Record<number, string>;
  readonly userData?: Buffer;
}

/**
 * Verifies a document (chain to the pinned root, signature, expected PCRs) and that its
 * nonce is `expectedNonce`, throwing otherwise.
 */
export type AttestationCheck = (doc: Buffer, expectedNonce: Buffer) => AttestedIdentity | Promise<AttestedIdentity>;

/** The execution context's side: one hello, one session. */
export class ContextHandshake {
  private used = false;

  private constructor(
    private readonly ecdh: ECDH,
    readonly hello: ContextHello,
  ) {}

  /** A fresh session id, nonce and ephemeral key pair. */
  static start(): ContextHandshake {
    const ecdh = createEcdhKeyPair();
    return new ContextHandshake(ecdh, {
      sessionId: randomBytes(SESSION_ID_BYTES),
      nonce: randomBytes(HELLO_NONCE_BYTES),
      contextPublicKey: publicKeyOf(ecdh),
    });
  }

  /**
   * Checks the reply's attestation and derives the session. Refuses a reply for another
   * session (WRONG_SESSION), one the check rejects (its error), attested PCR0-2 that are
   * missing or malformed (INVALID_PCR), and user_data that is not a P-384 point
   * (INVALID_PUBLIC_KEY). Single use: the ephemeral key serves one session at most.
   */
  async finish(reply: EnclaveReply, check: AttestationCheck, backend?: AesGcmBackend): Promise<AbeSession> {
    if (this.used) throw new AbeError('CLOSED', 'this handshake has already been finished');
    this.used = true;
    checkEnclaveReply(reply);
    if (!reply.sessionId.equals(this.hello.sessionId)) {
      throw new AbeError('WRONG_SESSION', `the reply is for session ${reply.sessionId.toString('hex')}`);
    }
    const attested = await check(reply.attestationDocument, this.hello.nonce);
    const pcrs = imagePcrs(attested.pcrs);
    if (attested.userData === undefined) {
      throw new AbeError('INVALID_PUBLIC_KEY', "the attestation document has no user_data (the enclave's ECDH public key)");
    }
    const enclavePublicKey = Buffer.from(attested.userData);
    const sharedSecret = ecdhSharedSecret(this.ecdh, enclavePublicKey, "the enclave's public key (user_data)");
    try {
      const sessionKey = deriveSessionKey({ sharedSecret, pcrs, sessionId: this.hello.sessionId, contextPublicKey: this.hello.contextPublicKey, enclavePublicKey });
      return new AbeSession(this.hello.sessionId, sessionKey, backend);
    } finally {
      sharedSecret.fill(0);
    }
  }
}

/** What the enclave side needs to answer a hello. */
export interface EnclaveIdentity {
  readonly attester: Attester;
  /** The enclave's own PCR0-2 (from NSM), which the context will read from the document. */
  readonly pcrs: ImagePcrs;
  /** The RSA public key (DER) to place in the document's public_key, for KMS. */
  readonly publicKey?: Buffer;
}

/** The enclave's side: answers one hello with an attested ephemeral key and derives the session. */
export async function answerHello(hello: ContextHello, enclave: EnclaveIdentity, backend?: AesGcmBackend): Promise<{ reply: EnclaveReply; session: AbeSession }> {
  checkContextHello(hello);
  const ecdh = createEcdhKeyPair();
  const enclavePublicKey = publicKeyOf(ecdh);
  const sharedSecret = ecdhSharedSecret(ecdh, hello.contextPublicKey, "the context's public key");
  try {
    const attestationDocument = await enclave.attester.attest({ nonce: hello.nonce, userData: enclavePublicKey, publicKey: enclave.publicKey });
    const sessionKey = deriveSessionKey({ sharedSecret, pcrs: enclave.pcrs, sessionId: hello.sessionId, contextPublicKey: hello.contextPublicKey, enclavePublicKey });
    return { reply: { sessionId: hello.sessionId, attestationDocument }, session: new AbeSession(hello.sessionId, sessionKey, backend) };
  } finally {
    sharedSecret.fill(0);
  }
}

/** PCR0, PCR1 and PCR2 from a verifier's hex map: each must be present and 48 bytes. */
function imagePcrs(pcrs: Record<number, string>): ImagePcrs {
  const read = (index: number): Buffer => {
    const hex = pcrs[index];
    if (typeof hex !== 'string' || !/^[0-9a-fA-F]*$/.test(hex) || hex.length !== 2 * PCR_BYTES) {
      throw new AbeError('INVALID_PCR', `the attested PCR${index} is missing or not ${PCR_BYTES} bytes of hex`);
    }
    return Buffer.from(hex, 'hex');
  };
  return [read(0), read(1), read(2)];
}
