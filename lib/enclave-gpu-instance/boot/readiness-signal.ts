import { shellQuote } from './boot-script';
import { INSTANCE_ID_FUNCTION } from './instance-metadata';

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
}

type SignalStatus = 'SUCCESS' | 'FAILURE';

/** The shell function that signals its argument, SUCCESS or FAILURE, for this instance. */
const SIGNAL_FUNCTION = 'signal_cloudformation';

/** Signal attempts before giving up: a throttled call or IAM still propagating must not cost a rollback. */
const SIGNAL_ATTEMPTS = 4;

/**
 * Defines {@link SIGNAL_FUNCTION} (which takes the instance ID from {@link INSTANCE_ID_FUNCTION}),
 * signalling the stack in `region`.
 * A refused or failed call is retried, 5, 10 and 15 s apart, then only logged: outside a
 * stack operation that waits for the signal (an instance a group launches later, to replace
 * or scale) every call is refused, and none is expected.
 */
export function signalFunctionCommands(signal: ReadinessSignal, region: string): string[] {
  return [
    `${SIGNAL_FUNCTION}() {`,
    '  local attempt',
    `  for attempt in $(seq ${SIGNAL_ATTEMPTS}); do`,
    `    aws cloudformation signal-resource --stack-name ${shellQuote(signal.stackName)} --logical-resource-id ${shellQuote(signal.logicalId)} --unique-id "$(${INSTANCE_ID_FUNCTION})" --status "$1" --region ${region} && return 0`,
    `    [ "$attempt" -eq ${SIGNAL_ATTEMPTS} ] || sleep $((attempt * 5))`,
    '  done',
    '  echo "$1 not signalled to CloudFormation (refused or unreachable; none is expected when no stack operation waits for this instance)"',
    '}',
  ];
}

/** The command that signals `status` (after {@link signalFunctionCommands}). */
export function signalCommand(status: SignalStatus): string {
  return `${SIGNAL_FUNCTION} ${status}`;
}

/**
 * Waits until `probe` succeeds, checking every 5 s, and fails the boot (its ERR trap reports
 * the failure) once the script has run `deadlineSeconds` (bash's SECONDS counts from the
 * script's start).
 */
export function waitUntilReadyCommands(probe: string, deadlineSeconds: number): string[] {
  return [
    `until ${probe}; do`,
    `  if [ "$SECONDS" -ge ${deadlineSeconds} ]; then echo "[enclave-gpu] not ready ${deadlineSeconds} s into the boot"; false; fi`,
    '  sleep 5',
    'done',
  ];
}
