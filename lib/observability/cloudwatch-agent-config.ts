import { AGENT_HOST_METRICS, DIMENSIONS, KERNEL_ATTESTATION_LOG_PATH, NAMESPACE, NVIDIA_GPU_MEASUREMENTS } from './metric-catalogue';

/** Where the boot script writes the agent configuration. */
export const AGENT_CONFIG_PATH = '/opt/aws/amazon-cloudwatch-agent/etc/enclave-gpu.json';
export const AGENT_CTL = '/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl';

/** Where the instances' boot script keeps its output; the agent ships it to the boot log group. */
export const BOOT_LOG_PATH = '/var/log/enclave-gpu-boot.log';

export interface AgentConfigSettings {
  readonly gpuMeasurements: readonly string[];
  readonly collectionIntervalSeconds: number;
  /** The kernel-attestation log group's name (may be a token, resolved by CloudFormation). */
  readonly kernelAttestationLogGroupName: string;
  /** The boot log group's name (may be a token). */
  readonly bootLogGroupName: string;
}

/** Names among `measurements` that the agent would not accept. */
export function unknownGpuMeasurements(measurements: readonly string[]): string[] {
  return measurements.filter((m) => !NVIDIA_GPU_MEASUREMENTS.includes(m));
}

/**
 * The CloudWatch agent configuration: GPU, memory and root-disk metrics into the
 * `EnclaveGPU` namespace, tagged with the instance id and also aggregated to it, and the
 * kernel-attestation log and the boot script's output shipped to their log groups, one
 * stream per instance.
 */
export function renderAgentConfig(settings: AgentConfigSettings): string {
  const config = {
    agent: {
      metrics_collection_interval: settings.collectionIntervalSeconds,
      omit_hostname: true,
    },
    metrics: {
      namespace: NAMESPACE,
      append_dimensions: { [DIMENSIONS.instanceId]: '${aws:InstanceId}' },
      aggregation_dimensions: [[DIMENSIONS.instanceId]],
      metrics_collected: {
        nvidia_gpu: { measurement: [...settings.gpuMeasurements] },
        mem: { measurement: [AGENT_HOST_METRICS.memoryUsedPercent] },
        disk: { measurement: ['used_percent'], resources: ['/'] },
      },
    },
    logs: {
      logs_collected: {
        files: {
          collect_list: [
            { file_path: KERNEL_ATTESTATION_LOG_PATH, log_group_name: settings.kernelAttestationLogGroupName, log_stream_name: '{instance_id}' },
            { file_path: BOOT_LOG_PATH, log_group_name: settings.bootLogGroupName, log_stream_name: '{instance_id}' },
          ],
        },
      },
    },
  };
  // One line: it travels in user data, which EC2 limits to 16 KB.
  return `${JSON.stringify(config)}\n`;
}
