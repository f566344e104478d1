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
