export * from './enclave-gpu-instance';
export * from './enclave-image';
export * from './enclave-resources';
