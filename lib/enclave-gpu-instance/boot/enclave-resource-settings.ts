/** The resolved CPU and memory of the enclave, after defaults and validation. */
export interface EnclaveResourceSettings {
  readonly cpuCount: number;
  readonly memoryMiB: number;
}
