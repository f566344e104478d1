export * from './metric-namespace';
export * from './nvidia-gpu-measurement';
export * from './enclave-gpu-observability';
