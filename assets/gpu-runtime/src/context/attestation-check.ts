/**
 * The context's own check of the enclave's attestation document (it trusts no one, SGS
 * included, PROTOCOL.md "Session set-up"): the chain to the pinned root, the ES384
 * signature, the hello's nonce, and, when configured, the expected PCRs.
 */
import { X509Certificate } from 'node:crypto';
import type { AttestationCheck, AttestedIdentity } from '../abe/handshake';
import { RootOption } from '../attestation/root';
import { verifyAttestationDocument } from '../attestation/verify';
import { readRootFile } from '../cli/attest-inputs';

/** 'aws' (the AWS Nitro root G1), a certificate, or the path of a PEM file holding one (local mode's simulated root). */
export type ContextRoot = RootOption | string;

export interface AttestationPolicy {
  readonly root: ContextRoot;
  /** PCR index to the hex value the document must carry; none checked when absent. */
  readonly expectedPcrs?: Readonly<Record<number, string>>;
  /** When certificates must be valid; default the time of each check. */
  readonly clock?: () => Date;
}

/** Reads a PEM root once, so a bad path fails at start-up rather than at the first session. */
export function resolveContextRoot(root: ContextRoot): RootOption {
  if (root === 'aws' || root instanceof X509Certificate) return root;
  return readRootFile(root);
}

export function attestationCheck(policy: AttestationPolicy): AttestationCheck {
  const root = resolveContextRoot(policy.root);
  return (document: Buffer, expectedNonce: Buffer): AttestedIdentity =>
    verifyAttestationDocument(document, {
      root,
      at: policy.clock?.() ?? new Date(),
      expectedNonce,
      expectedPcrs: policy.expectedPcrs,
    });
}
