import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import { Token } from 'aws-cdk-lib';
import { IConstruct } from 'constructs';
import { EnclaveGpuObservability } from '../observability/enclave-gpu-observability';
import { propError } from './validation';


/**
 * How an {@link EnclaveGpuFleet} scales: target tracking on one of the `EnclaveGPU`
 * metrics the runtime publishes per enclave image (the fleet-wide dimension set).
 */
export abstract class FleetScaling {
  /**
   * Keep the average queue depth per instance at the target: scales out when requests wait
   * for the GPU.
   *
   * @param target requests waiting per instance, above 0
   */
  public static queueDepth(target: number): FleetScaling {
    return new MetricScaling('QueueDepth', target, Infinity, (o) => o.metricQueueDepth({ statistic: 'Average' }));
  }

  /**
   * Keep the average GPU utilization by enclave sessions at the target. Only kernels that run
   * on the GPU count (`onnx.run` with onnxruntime's CUDA provider): a fleet whose kernels run
   * on the CPU reads as idle.
   *
   * @param targetPercent percent, above 0 and at most 100
   */
  public static gpuUtilization(targetPercent: number): FleetScaling {
    return new MetricScaling('GPUUtilization', targetPercent, 100, (o) => o.metricGpuUtilization({ statistic: 'Average' }));
  }

  /** No scaling policy: the group stays at its desired capacity. */
  public static none(): FleetScaling {
    return new NoScaling();
  }

  /**
   * The policy for the fleet `scope` (undefined: none), checked: errors name `scope`'s
   * `scaling` prop.
   *
   * @internal
   */
  public abstract _policy(scope: IConstruct, observability: EnclaveGpuObservability | undefined): { name: string; target: number; metric: cloudwatch.IMetric } | undefined;
}

class MetricScaling extends FleetScaling {
  constructor(
    private readonly name: string,
    private readonly target: number,
    private readonly maxTarget: number,
    private readonly metric: (o: EnclaveGpuObservability) => cloudwatch.IMetric,
  ) {
    super();
  }

  public _policy(scope: IConstruct, observability: EnclaveGpuObservability | undefined) {
    if (!Token.isUnresolved(this.target) && !(Number.isFinite(this.target) && this.target > 0 && this.target <= this.maxTarget)) {
      const range = this.maxTarget === Infinity ? 'above 0' : `above 0 and at most ${this.maxTarget}`;
      throw propError(scope, 'scaling', `target ${this.target} for ${this.name} must be ${range}`, `Pass a target ${range}`);
    }
    if (!observability) {
      throw propError(scope, 'scaling', 'tracks an EnclaveGPU metric, but observability is off', 'Keep observability on, or use FleetScaling.none()');
    }
    return { name: this.name, target: this.target, metric: this.metric(observability) };
  }
}

class NoScaling extends FleetScaling {
  public _policy() {
    return undefined;
  }
}
