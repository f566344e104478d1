/**
 * The `EnclaveGPU` CloudWatch namespace: every metric, dimension and log record the
 * constructs and the runtime share. The runtime imports this file to publish; the
 * constructs import it to build dashboards, alarms and IAM conditions. It imports nothing
 * but the measurement names beside it, so the runtime does not depend on aws-cdk-lib.
 */
import { NvidiaGpuMeasurement } from './nvidia-gpu-measurement';

/** The namespace of every metric below, runtime and CloudWatch agent alike. */
export const NAMESPACE = 'EnclaveGPU';

/** Dimension names. */
export const DIMENSIONS = {
  /** The parent instance, `i-...`. */
  instanceId: 'InstanceId',
  /** The enclave image: the first 16 hex characters of its PCR0 (see {@link enclaveImageDimension}). */
  enclaveImage: 'EnclaveImage',
} as const;

/**
 * The dimension sets the runtime publishes every metric with: per instance, and per
 * enclave image across instances (so a fleet can alarm without knowing instance ids).
 */
export const RUNTIME_DIMENSION_SETS: ReadonlyArray<ReadonlyArray<string>> = [
  [DIMENSIONS.instanceId, DIMENSIONS.enclaveImage],
  [DIMENSIONS.enclaveImage],
];

/** Length of the PCR0 prefix used as the `EnclaveImage` dimension value. */
export const ENCLAVE_IMAGE_DIMENSION_LENGTH = 16;

/** The `EnclaveImage` dimension value of an image: the first 16 hex characters of its PCR0. */
export function enclaveImageDimension(pcr0: string): string {
  if (!/^[0-9a-f]{96}$/.test(pcr0)) {
    throw new Error(`enclaveImageDimension: pcr0 must be 96 lower-case hex characters, got '${pcr0}'`);
  }
  return pcr0.slice(0, ENCLAVE_IMAGE_DIMENSION_LENGTH);
}

/** CloudWatch units used here (the values of the PutMetricData `Unit` field). */
export type MetricUnit = 'Bytes' | 'Milliseconds' | 'Percent' | 'Count';

/** The statistic a metric is read with by default. */
export type MetricStatistic = 'Sum' | 'Average' | 'Maximum' | 'p50' | 'p99';

export interface MetricDefinition {
  /** The metric name in CloudWatch. */
  readonly name: string;
  readonly unit: MetricUnit;
  readonly statistic: MetricStatistic;
  /**
   * `distribution`: published as value/count arrays (PutMetricData `Values` and `Counts`)
   * so that percentiles work; `value`: one value per datum.
   */
  readonly publishedAs: 'value' | 'distribution';
  readonly description: string;
}

/** Metrics the runtime (SGS) publishes with {@link RUNTIME_DIMENSION_SETS}. */
export const RUNTIME_METRICS = {
  encryptedBytesIn: {
    name: 'EncryptedBytesIn', unit: 'Bytes', statistic: 'Sum', publishedAs: 'value',
    description: 'Ciphertext bytes received from enclaves for the GPU (tensors and weights, sealed).',
  },
  encryptedBytesOut: {
    name: 'EncryptedBytesOut', unit: 'Bytes', statistic: 'Sum', publishedAs: 'value',
    description: 'Ciphertext bytes returned to enclaves (results, sealed).',
  },
  enclaveToHostLatency: {
    name: 'EnclaveToHostLatency', unit: 'Milliseconds', statistic: 'p99', publishedAs: 'distribution',
    description: 'Time from a request leaving the enclave to its sealed result returning, per request.',
  },
  gpuUtilization: {
    name: 'GPUUtilization', unit: 'Percent', statistic: 'Average', publishedAs: 'value',
    description: 'Share of time the GPU ran kernels for enclave sessions (kernels that ran on the CPU do not count).',
  },
  kernelLaunches: {
    name: 'KernelLaunches', unit: 'Count', statistic: 'Sum', publishedAs: 'value',
    description: 'Kernels launched on behalf of enclaves (each one logs a kernel-attestation record).',
  },
  attestationFailures: {
    name: 'AttestationFailures', unit: 'Count', statistic: 'Sum', publishedAs: 'value',
    description: 'Sessions refused because the attestation document did not verify or its PCRs were not allowed.',
  },
  replayRejected: {
    name: 'ReplayRejected', unit: 'Count', statistic: 'Sum', publishedAs: 'value',
    description: 'Frames refused because their operation number was not above the last accepted one.',
  },
  queueDepth: {
    name: 'QueueDepth', unit: 'Count', statistic: 'Maximum', publishedAs: 'value',
    description: 'Requests waiting for the GPU.',
  },
} as const satisfies Record<string, MetricDefinition>;

/**
 * Derived from the kernel-attestation log by metric filters, one per dimension set of
 * {@link RUNTIME_DIMENSION_SETS}, with the dimension values taken from each record.
 */
export const KERNEL_ATTESTATION_RECORDS = {
  name: 'KernelAttestationRecords', unit: 'Count', statistic: 'Sum', publishedAs: 'value',
  description: 'Kernel-attestation records shipped to CloudWatch Logs; should equal KernelLaunches.',
} as const satisfies MetricDefinition;

/**
 * One line of the kernel-attestation log (JSON lines): written by the runtime for every
 * kernel launch, shipped by the CloudWatch agent.
 */
export interface KernelAttestationRecord {
  /** ISO 8601 time of the launch. */
  readonly time: string;
  readonly instanceId: string;
  /** The `EnclaveImage` dimension value of the enclave that asked for the launch. */
  readonly enclaveImage: string;
  /** The session id, hex. */
  readonly session: string;
  /** The operation number of the launch within the session. */
  readonly launch: number;
  /** The kernel name, for example `gemm` or `onnx.run`. */
  readonly kernel: string;
  /** SHA-384, hex, of the kernel code or model actually run. */
  readonly codeSha384: string;
  /**
   * Where it ran: `gpu` (onnx.run with onnxruntime's CUDA provider) or `cpu` (the built-in
   * kernels, and onnx.run without the CUDA provider). Absent for a launch the context
   * refused (codeSha384 is then 48 zero bytes): nothing ran.
   */
  readonly device?: 'gpu' | 'cpu';
}

/** Where the runtime writes the kernel-attestation log on the parent instance. */
export const KERNEL_ATTESTATION_LOG_PATH = '/var/log/enclave-gpu/kernel-attestation.jsonl';

/** The CloudWatch agent's `nvidia_gpu` measurements: the only names it accepts. */
export const NVIDIA_GPU_MEASUREMENTS: readonly string[] = Object.values(NvidiaGpuMeasurement);

/** How the agent names a `nvidia_gpu` measurement in CloudWatch. */
export function agentGpuMetricName(measurement: NvidiaGpuMeasurement): string {
  return `nvidia_smi_${measurement}`;
}

/** Host metrics the agent publishes into the namespace, aggregated to the `InstanceId` dimension. */
export const AGENT_HOST_METRICS = {
  memoryUsedPercent: 'mem_used_percent',
  diskUsedPercent: 'disk_used_percent',
} as const;
