export * from './enclave-gpu-instance';
export * from './enclave-image';
export * from './enclave-resources';
export * from './enclave-host-props';
export * from './enclave-gpu-fleet';
export * from './fleet-scaling';
export * from './enclave-gpu-image';
export { GpuRuntime, GpuRuntimeConfig, GpuRuntimeOptions, OnnxCudaProviderPackage } from './gpu-runtime';
