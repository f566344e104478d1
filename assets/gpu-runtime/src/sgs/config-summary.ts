/**
 * What `egpu sgs` prints at start: the resolved configuration, including the CUDA MPS
 * settings each partition maps to. SGS does not start the MPS daemon or the execution
 * context; where a GPU is present, the context's MPS client environment is set from these.
 */
import { existsSync } from 'node:fs';
import { enclaveImageDimension } from '../../../../lib/observability/metric-catalogue';
import { formatAddress } from '../protocol/transport';
import { PartitionConfig, SgsConfig } from './config';

/** The CUDA MPS client settings of a partition (NVIDIA's MPS documentation names both). */
export function mpsSettings(partition: PartitionConfig): Record<string, string> {
  const mebibytes = Math.max(1, Math.floor(partition.memoryCapBytes / (1024 * 1024)));
  return {
    // Percentage of the GPU's SMs a client may use: the partition's share.
    CUDA_MPS_ACTIVE_THREAD_PERCENTAGE: String(Math.max(1, Math.round(partition.gpuShare * 100))),
    // Device memory a client may pin, on device 0: the partition's cap.
    CUDA_MPS_PINNED_DEVICE_MEM_LIMIT: `0=${mebibytes}M`,
  };
}

/** True where an NVIDIA driver exposes a device (MPS settings then apply). */
export function gpuPresent(): boolean {
  return existsSync('/dev/nvidia0');
}

export function renderConfigSummary(config: SgsConfig, options: { gpuPresent: boolean }): string {
  const lines = [
    'sgs configuration:',
    `  enclave link      ${formatAddress(config.enclaveListen)}`,
    `  context           ${formatAddress(config.context)}`,
    `  attestation root  ${config.rootSource === 'aws' ? 'aws (AWS Nitro root G1)' : config.rootSource}`,
    `  allowlist         ${config.allowlist.length} image(s)`,
    ...config.allowlist.map((image) => `    EnclaveImage ${enclaveImageDimension(image.pcr0)}  partition ${image.partition}`),
    `  limits            maxInFlight ${config.maxInFlight}, maxSessions ${config.maxSessions}, maxBufferedBytes ${config.maxBufferedBytes}, deadline ${config.deadlineMs} ms, handshake ${config.handshakeTimeoutMs} ms, drain ${config.drainTimeoutMs} ms`,
    `  health            ${config.health ? `http://${formatAddress(config.health).slice('tcp:'.length)}/health` : 'off'}`,
    `  metrics           ${config.metrics.enabled ? `CloudWatch, region ${config.metrics.region ?? '(SDK default)'}, InstanceId ${config.metrics.instanceId}, every ${config.metrics.flushIntervalMs} ms, buffer ${config.metrics.maxBufferedData}` : 'off'}`,
    `  kernel log        ${config.kernelAttestationLog}`,
    `  partitions        (MPS settings ${options.gpuPresent ? 'apply: a GPU is present' : 'shown for reference: no GPU here'})`,
  ];
  for (const [name, partition] of config.partitions) {
    const mps = Object.entries(mpsSettings(partition)).map(([key, value]) => `${key}=${value}`).join(' ');
    lines.push(`    ${name}: gpuShare ${partition.gpuShare}, memoryCapBytes ${partition.memoryCapBytes}, queueBound ${partition.queueBound}; ${mps}`);
  }
  return `${lines.join('\n')}\n`;
}
