import { shellQuote } from './boot-script';

/**
 * Where a parent instance tells CloudFormation it is ready (or that its boot failed): the
 * resource whose creation policy, or whose rolling update's `WaitOnResourceSignals`, waits
 * for one signal per instance. The instance signals with the AWS CLI (`SignalResource`,
 * allowed to its role for this stack only), which the boot script already needs for S3.
 */
export interface ReadinessSignal {
  readonly stackName: string;
  /** The logical ID of the instance, or of the Auto Scaling group. */
  readonly logicalId: string;
  readonly region: string;
}

export type SignalStatus = 'SUCCESS' | 'FAILURE';

/** The shell function that signals its argument, SUCCESS or FAILURE, for the instance in $instance_id. */
export const SIGNAL_FUNCTION = 'signal_cloudformation';

/**
 * Defines {@link SIGNAL_FUNCTION}. Outside a stack operation that waits for the signal (an
 * instance a group launches later, to replace or scale) the call is refused; that is only
 * logged.
 */
export function signalFunctionCommands(signal: ReadinessSignal): string[] {
  return [
    `${SIGNAL_FUNCTION}() {`,
    `  aws cloudformation signal-resource --stack-name ${shellQuote(signal.stackName)} --logical-resource-id ${shellQuote(signal.logicalId)} --unique-id "$instance_id" --status "$1" --region ${signal.region} \\`,
    '    || echo "$1 not signalled to CloudFormation (no stack operation waits for this instance)"',
    '}',
  ];
}

/** The command that signals `status` (after {@link signalFunctionCommands}). */
export function signalCommand(status: SignalStatus): string {
  return `${SIGNAL_FUNCTION} ${status}`;
}

/**
 * Waits until `probe` succeeds, checking every 5 s, and fails the boot (its ERR trap reports
 * the failure) when it has not within `timeoutSeconds`.
 */
export function waitUntilReadyCommands(probe: string, timeoutSeconds: number): string[] {
  return [
    `ready_deadline=$((SECONDS + ${timeoutSeconds}))`,
    `until ${probe}; do`,
    `  if [ "$SECONDS" -ge "$ready_deadline" ]; then echo "[enclave-gpu] not ready after ${timeoutSeconds} s"; false; fi`,
    '  sleep 5',
    'done',
  ];
}
