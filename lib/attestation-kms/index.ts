export * from './pcrs';
export * from './eif-measurements';
export * from './attestation-bound-key';
