/**
 * SGS's own check of an enclave before it relays the enclave's reply to the context: the
 * attestation document chains to the pinned root with a valid ES384 signature, carries the
 * nonce of this session's hello, is at most HANDSHAKE_DOCUMENT_MAX_AGE_MS old, and attests PCR0-2 that the allowlist names. The context
 * checks again (it trusts no one); SGS checks so that an enclave it would not serve never
 * reaches the context, and so that it knows which image (and partition) a session belongs to.
 *
 * Nothing here is secret: the hello and the reply are public, and SGS derives no key.
 */
import { enclaveImageDimension } from '../../../../lib/observability/metric-catalogue';
import { ContextHello, decodeEnclaveReply } from '../abe/handshake-messages';
import { RootOption } from '../attestation/root';
import { HANDSHAKE_DOCUMENT_MAX_AGE_MS, verifyAttestationDocument } from '../attestation/verify';
import { RuntimeError } from '../errors';
import { WireError } from '../protocol/wire-error';
import { AllowedImage } from './config';

export interface AdmittedEnclave {
  /** PCR0 of the verified document, lower-case hex. */
  readonly pcr0: string;
  /** The EnclaveImage dimension: the first 16 hex characters of PCR0. */
  readonly enclaveImage: string;
  readonly partition: string;
}

export interface AdmissionPolicy {
  readonly root: RootOption;
  readonly allowlist: readonly AllowedImage[];
}

/** Admits the enclave whose reply this is, or throws WireError UNAUTHORIZED saying why. */
export function admitEnclave(replyBytes: Buffer, hello: ContextHello, policy: AdmissionPolicy, at?: Date): AdmittedEnclave {
  try {
    const reply = decodeEnclaveReply(replyBytes);
    if (!reply.sessionId.equals(hello.sessionId)) {
      throw new WireError('UNAUTHORIZED', "the reply names another session than this connection's hello");
    }
    const verified = verifyAttestationDocument(reply.attestationDocument, { root: policy.root, expectedNonce: hello.nonce, at, maxAgeMs: HANDSHAKE_DOCUMENT_MAX_AGE_MS });
    const [pcr0, pcr1, pcr2] = [verified.pcrs[0], verified.pcrs[1], verified.pcrs[2]];
    const image = policy.allowlist.find((entry) => entry.pcr0 === pcr0 && entry.pcr1 === pcr1 && entry.pcr2 === pcr2);
    if (image === undefined) {
      throw new WireError('UNAUTHORIZED', `the enclave's PCR0-2 are not in the allowlist (PCR0 ${String(pcr0).slice(0, 16)}...)`);
    }
    return { pcr0: image.pcr0, enclaveImage: enclaveImageDimension(image.pcr0), partition: image.partition };
  } catch (error) {
    if (error instanceof WireError) throw error;
    if (error instanceof RuntimeError) throw new WireError('UNAUTHORIZED', `${error.code}: ${error.reason}`);
    throw new WireError('UNAUTHORIZED', 'the attestation document could not be checked');
  }
}
