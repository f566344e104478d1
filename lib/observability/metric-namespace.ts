import { NAMESPACE, enclaveImageDimension } from './metric-catalogue';

/**
 * Names shared by the constructs and the runtime for the `EnclaveGPU` CloudWatch namespace.
 *
 * The instance role may publish metrics only into this namespace (an IAM condition on
 * `cloudwatch:namespace`), so the runtime and the constructs must agree on it.
 */
export class EnclaveGpuMetrics {
  /** The CloudWatch namespace every `EnclaveGPU` metric is published in. */
  public static readonly NAMESPACE: string = NAMESPACE;

  /**
   * The `EnclaveImage` dimension value of an enclave image: the first 16 hex characters of
   * its PCR0.
   *
   * @param pcr0 the image's PCR0, 96 lower-case hex characters
   */
  public static enclaveImageDimension(pcr0: string): string {
    return enclaveImageDimension(pcr0);
  }

  private constructor() {}
}
