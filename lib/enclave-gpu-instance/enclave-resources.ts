/**
 * The vCPUs and memory the parent instance gives its Nitro enclave.
 */
export interface EnclaveResources {
  /**
   * vCPUs for the enclave. Enclaves take whole cores, so on instance types with
   * simultaneous multithreading (every x86 GPU type) this must be even; the parent
   * instance keeps at least 2 vCPUs.
   *
   * @default 2
   */
  readonly cpuCount?: number;

  /**
   * Memory for the enclave, in MiB. At least 64 MiB and at least four times the size of
   * the enclave image file (nitro-cli refuses less), and below the instance's memory.
   *
   * @default 4096
   */
  readonly memoryMiB?: number;
}
