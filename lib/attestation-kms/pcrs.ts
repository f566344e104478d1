/**
 * Platform Configuration Register values of a Nitro enclave, as SHA-384 digests in
 * lower-case hex (96 characters each).
 *
 * - PCR0: the enclave image file (kernel, command line and all ramdisks)
 * - PCR1: the Linux kernel and bootstrap
 * - PCR2: the application (the remaining ramdisks)
 * - PCR3: the IAM role of the parent instance
 * - PCR4: the parent instance id
 * - PCR8: the certificate that signed the enclave image file
 *
 * @see https://docs.aws.amazon.com/enclaves/latest/user/set-up-attestation.html
 */
export interface Pcrs {
  /**
   * PCR0: SHA-384 measurement of the whole enclave image file.
   *
   * @default - not pinned
   */
  readonly pcr0?: string;

  /**
   * PCR1: SHA-384 measurement of the Linux kernel and bootstrap.
   *
   * @default - not pinned
   */
  readonly pcr1?: string;

  /**
   * PCR2: SHA-384 measurement of the application.
   *
   * @default - not pinned
   */
  readonly pcr2?: string;

  /**
   * PCR3: SHA-384 measurement of the parent instance's IAM role ARN.
   *
   * @default - not pinned
   */
  readonly pcr3?: string;

  /**
   * PCR4: SHA-384 measurement of the parent instance id.
   *
   * @default - not pinned
   */
  readonly pcr4?: string;

  /**
   * PCR8: SHA-384 measurement of the enclave image file's signing certificate.
   *
   * @default - not pinned
   */
  readonly pcr8?: string;
}

/** The PCR fields of {@link Pcrs}, in index order. */
export const PCR_FIELDS = ['pcr0', 'pcr1', 'pcr2', 'pcr3', 'pcr4', 'pcr8'] as const;

const SHA384_HEX = /^[0-9a-f]{96}$/;

/**
 * Checks every PCR given and returns a list of problems, one line each, naming the PCR.
 * An empty list means the values are well formed.
 */
export function pcrProblems(pcrs: Pcrs): string[] {
  const problems: string[] = [];
  for (const field of PCR_FIELDS) {
    const value = pcrs[field];
    if (value === undefined) {
      continue;
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

