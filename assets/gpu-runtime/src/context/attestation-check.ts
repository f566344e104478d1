/**
 * The context's own check of the enclave's attestation document (it trusts no one, SGS
 * included, PROTOCOL.md "Session set-up"): the chain to the pinned root, the ES384
 * signature, the hello's nonce, the document's age, and the expected PCRs, which must name the enclave's code
 * (PCR0, PCR8, or PCR1 and PCR2) and, unless debug mode is allowed, not be all zeros (the
 * measurement of an enclave in debug mode, whose memory the parent can read). Serving any
 * image is an explicit choice for development (allowAnyImage).
 */
import { X509Certificate } from 'node:crypto';
import type { AttestationCheck, AttestedIdentity } from '../abe/handshake';
import { RootOption } from '../attestation/root';
import { HANDSHAKE_DOCUMENT_MAX_AGE_MS, verifyAttestationDocument } from '../attestation/verify';
import { readRootFile } from '../cli/attest-inputs';
import { RuntimeError } from '../errors';

/** 'aws' (the AWS Nitro root G1), a certificate, or the path of a PEM file holding one (local mode's simulated root). */
export type ContextRoot = RootOption | string;

export interface AttestationPolicy {
  readonly root: ContextRoot;
  /** PCR index to the hex value the document must carry: PCR0, PCR8, or PCR1 and PCR2 at least. */
  readonly expectedPcrs?: Readonly<Record<number, string>>;
  /** Accept documents of any image (no expectedPcrs): for development only. Default false. */
  readonly allowAnyImage?: boolean;
  /** Accept all-zero expected PCRs (enclaves in debug mode): for development only. Default false. */
  readonly allowDebugMode?: boolean;
  /** When certificates must be valid; default the time of each check. */
  readonly clock?: () => Date;
}

/** Reads a PEM root once, so a bad path fails at start-up rather than at the first session. */
export function resolveContextRoot(root: ContextRoot): RootOption {
  if (root === 'aws' || root instanceof X509Certificate) return root;
  return readRootFile(root);
}

export function attestationCheck(policy: AttestationPolicy): AttestationCheck {
  checkImagePolicy(policy);
  const root = resolveContextRoot(policy.root);
  return (document: Buffer, expectedNonce: Buffer): AttestedIdentity =>
    verifyAttestationDocument(document, {
      root,
      at: policy.clock?.() ?? new Date(),
      expectedNonce,
      expectedPcrs: policy.expectedPcrs,
      maxAgeMs: HANDSHAKE_DOCUMENT_MAX_AGE_MS,
    });
}

/** The PCRs that name an image's code: PCR0 (the whole image), PCR8 (its signing certificate), or PCR1 and PCR2 (kernel and application). */
function identifiesImage(indexes: ReadonlySet<number>): boolean {
  return indexes.has(0) || indexes.has(8) || (indexes.has(1) && indexes.has(2));
}

/** How the caller's user allows any image, or debug mode: the option names the refusals point to. */
export interface ImagePolicyOptionNames {
  readonly anyImage: string;
  readonly debugMode: string;
}

const OPTION_NAMES: ImagePolicyOptionNames = { anyImage: 'allowAnyImage: true', debugMode: 'allowDebugMode: true' };

/**
 * Refuses (IMAGE_POLICY) a policy that would serve images nobody chose: expected PCRs that
 * name no code, or all-zero (debug-mode) ones, unless allowed.
 */
export function checkImagePolicy(policy: Pick<AttestationPolicy, 'expectedPcrs' | 'allowAnyImage' | 'allowDebugMode'>, names = OPTION_NAMES): void {
  const expected = Object.entries(policy.expectedPcrs ?? {});
  if (expected.length === 0 && policy.allowAnyImage === true) return;
  const indexes = new Set(expected.map(([index]) => Number(index)));
  if (!identifiesImage(indexes)) {
    const given = expected.length === 0 ? 'none' : [...indexes].map((i) => `PCR${i}`).join(', ');
    throw new RuntimeError('IMAGE_POLICY', `the expected PCRs (${given}) do not name the enclave's code, so any image would be served: expect PCR0, PCR8, or PCR1 and PCR2 (the values nitro-cli describe-eif prints), or pass ${names.anyImage} for development`);
  }
  const zeros = expected.filter(([, value]) => /^0+$/.test(value)).map(([index]) => `PCR${index}`);
  if (zeros.length > 0 && policy.allowDebugMode !== true) {
    throw new RuntimeError('IMAGE_POLICY', `the expected ${zeros.join(', ')} ${zeros.length === 1 ? 'is' : 'are'} all zeros, the measurement of an enclave in debug mode, whose memory the parent instance can read: expect the real measurements, or pass ${names.debugMode} for development`);
  }
}
