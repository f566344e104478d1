import { KERNEL_ATTESTATION_LOG_PATH } from '../../observability/metric-catalogue';

/** logrotate's configuration for the runtime's logs. */
export const LOG_ROTATION_PATH = '/etc/logrotate.d/enclave-gpu';

/** The most the kernel-attestation log may grow between rotations, and how many rotated copies are kept. */
export const KERNEL_LOG_MAX_SIZE = '256M';
export const KERNEL_LOG_ROTATIONS = 7;

/**
 * Rotation of SGS's kernel-attestation log (one line per launch, appended for as long as SGS
 * runs): daily, or sooner once it passes KERNEL_LOG_MAX_SIZE, a week of compressed copies
 * kept. copytruncate, because SGS keeps the file open in append mode (its next line lands at
 * the start of the emptied file) and the CloudWatch agent follows a truncated file.
 */
export function renderLogRotation(): string {
  return [
    '# Rendered by cdk-enclave-gpu: the kernel-attestation log SGS appends to (shipped by the CloudWatch agent).',
    `${KERNEL_ATTESTATION_LOG_PATH} {`,
    '    daily',
    `    maxsize ${KERNEL_LOG_MAX_SIZE}`,
    `    rotate ${KERNEL_LOG_ROTATIONS}`,
    '    compress',
    '    delaycompress',
    '    missingok',
    '    notifempty',
    '    copytruncate',
    '}',
    '',
  ].join('\n');
}
