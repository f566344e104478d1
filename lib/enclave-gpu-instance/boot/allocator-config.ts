import { EnclaveResourceSettings } from './enclave-resource-settings';

/** Where nitro-enclaves-allocator.service reads how much CPU and memory to reserve. */
export const ALLOCATOR_CONFIG_PATH = '/etc/nitro_enclaves/allocator.yaml';

/**
 * Renders `/etc/nitro_enclaves/allocator.yaml`: the vCPUs and memory the allocator service
 * takes from the parent instance at boot for the enclave (plain `key: value` lines, the
 * format of the file the aws-nitro-enclaves-cli package installs).
 */
export function renderAllocatorConfig(resources: EnclaveResourceSettings): string {
  return [
    '---',
    '# Rendered by cdk-enclave-gpu from the EnclaveGpuInstance `enclave` prop.',
    `memory_mib: ${resources.memoryMiB}`,
    `cpu_count: ${resources.cpuCount}`,
    '',
  ].join('\n');
}
