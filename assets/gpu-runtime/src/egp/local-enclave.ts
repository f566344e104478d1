/**
 * Local mode's enclave identity: the simulated NSM (attestation/simulated-nsm.ts) signing
 * documents for fixed PCRs, so SGS's allowlist and the context's --expect-pcr can name them.
 * The PCRs default to SHA-384 of a label each, values no real image has.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { EnclaveIdentity } from '../abe/handshake';
import type { ImagePcrs } from '../abe/key-schedule';
import { SimulatedNsm } from '../attestation/simulated-nsm';
import { ROOT_CERTIFICATE_FILE } from '../attestation/simulated-nsm-state';

const label = (index: number) => createHash('sha384').update(`egpu simulated enclave PCR${index}`).digest();

/** PCR0-2 of the simulated enclave unless others are given. */
export const SIMULATED_ENCLAVE_PCRS: ImagePcrs = [label(0), label(1), label(2)];

/** PCR0-2 as lower-case hex, by index, as sgs.json's allowlist and --expect-pcr take them. */
export function pcrHex(pcrs: ImagePcrs): { 0: string; 1: string; 2: string } {
  return { 0: pcrs[0].toString('hex'), 1: pcrs[1].toString('hex'), 2: pcrs[2].toString('hex') };
}

/** An enclave identity whose documents the simulated NSM signs with these PCRs. */
export function simulatedEnclave(nsm: SimulatedNsm, pcrs: ImagePcrs = SIMULATED_ENCLAVE_PCRS, publicKey?: Buffer): EnclaveIdentity {
  const pcrValues = pcrHex(pcrs);
  return {
    pcrs,
    publicKey,
    attester: { attest: (request) => nsm.attest({ pcrs: pcrValues, nonce: request.nonce, userData: request.userData, publicKey: request.publicKey }) },
  };
}

/** The simulated NSM whose state is in `dir`, created there (root and intermediate) on first use. */
export function loadOrCreateNsm(dir: string): SimulatedNsm {
  if (existsSync(join(dir, ROOT_CERTIFICATE_FILE))) return SimulatedNsm.load(dir);
  const nsm = SimulatedNsm.create();
  nsm.save(dir);
  return nsm;
}
