import { KERNEL_ATTESTATION_LOG_PATH } from '../../observability/metric-catalogue';

/** logrotate's configuration for the runtime's logs. */
export const LOG_ROTATION_PATH = '/etc/logrotate.d/enclave-gpu';

/** The size past which a run of logrotate rotates the kernel-attestation log even within a day, and how many rotated copies are kept. */
export const KERNEL_LOG_MAX_SIZE = '256M';
export const KERNEL_LOG_ROTATIONS = 7;

/**
 * Rotation of SGS's kernel-attestation log (one line per launch, appended for as long as SGS
 * runs): daily, a week of compressed copies kept. logrotate runs once a day on Amazon Linux
 * 2023 (logrotate.timer), so KERNEL_LOG_MAX_SIZE rotates early only at a run started
 * otherwise (`logrotate /etc/logrotate.d/enclave-gpu`). copytruncate, because SGS keeps the file open in append mode (its next line lands at
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
