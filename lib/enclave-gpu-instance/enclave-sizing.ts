import { IConstruct } from 'constructs';
import { EnclaveResourceSettings } from './boot/enclave-resource-settings';
import { GpuInstanceTypeInfo } from './gpu-instance-type';
import { EnclaveResources } from './enclave-resources';
import { propError, requireWholeNumber } from './validation';

/** Defaults of {@link EnclaveResources}. */
export const DEFAULT_ENCLAVE_CPU_COUNT = 2;
export const DEFAULT_ENCLAVE_MEMORY_MIB = 4096;

/** vCPUs the parent instance must keep for itself when multithreading is on. */
export const PARENT_MIN_VCPUS = 2;

/** Smallest enclave nitro-cli will start. */
export const ENCLAVE_MIN_MEMORY_MIB = 64;

/**
 * nitro-cli refuses an enclave whose memory is below this multiple of the EIF size
 * (`ENCLAVE_MEMORY_EIF_SIZE_RATIO` in aws-nitro-enclaves-cli, src/enclave_proc/resource_manager.rs).
 */
export const ENCLAVE_MEMORY_EIF_SIZE_RATIO = 4;

const MIB = 1024 * 1024;

/**
 * Applies defaults and checks the enclave's vCPUs and memory against the instance type
 * (when it is in the catalogue) and the enclave image's size.
 */
export function resolveEnclaveResources(
  scope: IConstruct,
  requested: EnclaveResources = {},
  instanceType: GpuInstanceTypeInfo | undefined,
  eifSizeBytes: number,
): EnclaveResourceSettings {
  const threadsPerCore = instanceType?.threadsPerCore ?? 2;
  const maxCpus = instanceType ? instanceType.vCpus - PARENT_MIN_VCPUS : Number.MAX_SAFE_INTEGER;
  const cpuCount = requireWholeNumber(scope, 'enclave.cpuCount', requested.cpuCount ?? DEFAULT_ENCLAVE_CPU_COUNT, 1, Number.MAX_SAFE_INTEGER);
  if (cpuCount % threadsPerCore !== 0) {
    throw propError(
      scope,
      'enclave.cpuCount',
      `must be ${threadsPerCore === 2 ? 'even' : `a multiple of ${threadsPerCore}`} (enclaves take whole cores and this instance type runs ${threadsPerCore} threads per core), got ${cpuCount}`,
      `Use a multiple of ${threadsPerCore}, for example ${cpuCount + threadsPerCore - (cpuCount % threadsPerCore)}`,
    );
  }
  if (instanceType && cpuCount > maxCpus) {
    throw propError(
      scope,
      'enclave.cpuCount',
      `${cpuCount} leaves the parent instance fewer than ${PARENT_MIN_VCPUS} of its ${instanceType.vCpus} vCPUs`,
      `Use at most ${maxCpus}, or a larger instanceType`,
    );
  }

  const eifMinMiB = Math.ceil((eifSizeBytes * ENCLAVE_MEMORY_EIF_SIZE_RATIO) / MIB);
  const minMemory = Math.max(ENCLAVE_MIN_MEMORY_MIB, eifMinMiB);
  const memoryMiB = requireWholeNumber(scope, 'enclave.memoryMiB', requested.memoryMiB ?? DEFAULT_ENCLAVE_MEMORY_MIB, 1, Number.MAX_SAFE_INTEGER);
  if (memoryMiB < minMemory) {
    const why = minMemory === ENCLAVE_MIN_MEMORY_MIB
      ? `below the ${ENCLAVE_MIN_MEMORY_MIB} MiB minimum`
      : `below ${ENCLAVE_MEMORY_EIF_SIZE_RATIO}x the enclave image file's size, which nitro-cli requires`;
    throw propError(scope, 'enclave.memoryMiB', `${memoryMiB} is ${why}`, `Use at least ${minMemory}`);
  }
  if (instanceType && memoryMiB >= instanceType.memoryMiB) {
    throw propError(
      scope,
      'enclave.memoryMiB',
      `${memoryMiB} is not below the instance's ${instanceType.memoryMiB} MiB`,
      'Leave memory for the parent instance: lower it, or choose a larger instanceType',
    );
  }
  return { cpuCount, memoryMiB };
}
