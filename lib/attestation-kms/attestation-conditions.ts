import { PcrField, givenPcrs, pcrIndex } from './pcr-values';
import { Pcrs } from './pcrs';

/**
 * The KMS condition key that carries a PCR of the attestation document sent with a
 * `Recipient` request: `kms:RecipientAttestation:ImageSha384` for PCR0 (the image digest),
 * `kms:RecipientAttestation:PCR<n>` for the others.
 *
 * @see https://docs.aws.amazon.com/kms/latest/developerguide/conditions-nitro-enclaves.html
 */
export function recipientAttestationKey(field: PcrField): string {
  return field === 'pcr0' ? 'kms:RecipientAttestation:ImageSha384' : `kms:RecipientAttestation:PCR${pcrIndex(field)}`;
}

/** One `condition key -> PCR value` entry for every PCR given. */
export function attestationConditionEntries(pcrs: Pcrs): Array<[string, string]> {
  return givenPcrs(pcrs).map(([field, value]) => [recipientAttestationKey(field), value]);
}
