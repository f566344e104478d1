import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import { EnclaveGpuObservability } from '../observability/enclave-gpu-observability';

/**
 * How an {@link EnclaveGpuFleet} scales: target tracking on one of the `EnclaveGPU`
 * metrics the runtime publishes per enclave image (the fleet-wide dimension set).
 */
export abstract class FleetScaling {
  /**
   * Keep the average queue depth per instance at the target: scales out when requests wait
   * for the GPU.
   *
   * @param target requests waiting per instance
   */
  public static queueDepth(target: number): FleetScaling {
    return new MetricScaling('QueueDepth', target, (o) => o.metricQueueDepth({ statistic: 'Average' }));
  }

  /**
   * Keep the average GPU utilization by enclave sessions at the target.
   *
   * @param targetPercent percent, above 0 and at most 100
   */
  public static gpuUtilization(targetPercent: number): FleetScaling {
    return new MetricScaling('GPUUtilization', targetPercent, (o) => o.metricGpuUtilization({ statistic: 'Average' }));
  }

  /** No scaling policy: the group stays at its desired capacity. */
  public static none(): FleetScaling {
    return new NoScaling();
  }

  /** @internal */
  public abstract _policy(observability: EnclaveGpuObservability | undefined): { name: string; target: number; metric: cloudwatch.IMetric } | 'needs-metrics' | undefined;
}

class MetricScaling extends FleetScaling {
  constructor(
    private readonly name: string,
    private readonly target: number,
    private readonly metric: (o: EnclaveGpuObservability) => cloudwatch.IMetric,
  ) {
    super();
  }

  public _policy(observability: EnclaveGpuObservability | undefined) {
    // Without observability there is no EnclaveGPU metric to track: the fleet reports that as a scaling error.
    return observability ? { name: this.name, target: this.target, metric: this.metric(observability) } : 'needs-metrics' as const;
  }
}

class NoScaling extends FleetScaling {
  public _policy() {
    return undefined;
  }
}
