import { Token } from 'aws-cdk-lib';
import { Pcrs } from './pcrs';

/** The PCR fields of {@link Pcrs}, in index order. */
export const PCR_FIELDS = ['pcr0', 'pcr1', 'pcr2', 'pcr3', 'pcr4', 'pcr8'] as const;

const SHA384_HEX = /^[0-9a-f]{96}$/;

/** The number of a PCR field: `pcr8` is PCR 8. */
export function pcrIndex(field: PcrField): number {
  return Number(field.slice(3));
}

export type PcrField = (typeof PCR_FIELDS)[number];

/** The PCR fields given, in index order. */
export function givenPcrs(pcrs: Pcrs): Array<[PcrField, string]> {
  return PCR_FIELDS.flatMap((field) => (pcrs[field] === undefined ? [] : [[field, pcrs[field]!] as [PcrField, string]]));
}

/** True for a PCR of all zeros: what an enclave started with `--debug-mode` reports. */
export function isDebugModePcr(value: string): boolean {
  return /^0+$/.test(value);
}

/**
 * Checks every PCR given and returns a list of problems, one line each, naming the PCR.
 * An empty list means the values are well formed.
 */
export function pcrProblems(pcrs: Pcrs): string[] {
  const problems: string[] = [];
  for (const field of PCR_FIELDS) {
    const value = pcrs[field];
    if (value === undefined || Token.isUnresolved(value)) {
      continue; // a deploy-time value (for example a CfnParameter) cannot be checked at synth
    }
    if (typeof value !== 'string') {
      problems.push(`${field} must be a string of 96 lower-case hex characters, got ${typeof value}`);
    } else if (value.length !== 96) {
      problems.push(`${field} must be 96 hex characters (a SHA-384 digest), got ${value.length}`);
    } else if (!SHA384_HEX.test(value)) {
      problems.push(
        /^[0-9a-fA-F]{96}$/.test(value)
          ? `${field} must be lower-case hex (write ${value.toLowerCase().slice(0, 12)}...)`
          : `${field} contains characters that are not hex digits`,
      );
    }
  }
  return problems;
}

