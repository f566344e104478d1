/**
 * Names shared by the constructs and the runtime for the `EnclaveGPU` CloudWatch namespace.
 *
 * The instance role may publish metrics only into this namespace (an IAM condition on
 * `cloudwatch:namespace`), so the runtime and the constructs must agree on it.
 */
export class EnclaveGpuMetrics {
  /** The CloudWatch namespace every `EnclaveGPU` metric is published in. */
  public static readonly NAMESPACE = 'EnclaveGPU';

  private constructor() {}
}
