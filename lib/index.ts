export * from './enclave-gpu-instance';
export * as attestation_kms from './attestation-kms';
export * as observability from './observability';
