/**
 * What the constructs need to know about a GPU instance type that supports Nitro Enclaves:
 * the fields of EC2 `DescribeInstanceTypes` that the validation reads.
 *
 * Internal: the catalogue is data for validation, not public API.
 */
export interface GpuInstanceTypeInfo {
  /** `VCpuInfo.DefaultVCpus` */
  readonly vCpus: number;
  /** `VCpuInfo.DefaultThreadsPerCore`: enclaves take whole cores, so cpu_count is a multiple of this. */
  readonly threadsPerCore: number;
  /** `MemoryInfo.SizeInMiB` */
  readonly memoryMiB: number;
  /** `ProcessorInfo.SupportedArchitectures[0]` */
  readonly architecture: 'x86_64' | 'arm64';
  /** Sum of `GpuInfo.Gpus[].Count` */
  readonly gpuCount: number;
  /** `GpuInfo.Gpus[0].Manufacturer` and `Name`, for example `NVIDIA A10G` */
  readonly gpu: string;
}
