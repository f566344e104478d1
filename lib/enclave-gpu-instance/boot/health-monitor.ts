import { INSTANCE_ID_FUNCTION, instanceIdCommands } from './instance-metadata';
import { VSOCK_PROXY_SERVICE } from './nitro-cli-services';
import { signalCommand } from './readiness-signal';
import { CONTEXT_SERVICE, CONTEXT_SOCKET } from './runtime-services';
import { renderSystemdUnit } from './systemd-unit';

export const HEALTH_SCRIPT_PATH = '/usr/local/libexec/enclave-gpu/health-check';
export const HEALTH_SERVICE = 'enclave-gpu-health.service';
export const HEALTH_TIMER = 'enclave-gpu-health.timer';

/** Consecutive failed checks before the instance reports itself unhealthy. */
export const HEALTH_FAILURES_BEFORE_UNHEALTHY = 3;

/** Where the check counts consecutive failures (its own directory: /run/enclave-gpu belongs to the execution context). */
export const HEALTH_STATE_DIR = '/run/enclave-gpu-health';

/**
 * Who hears that an instance is unhealthy: EC2 Auto Scaling (`autoscaling:SetInstanceHealth`),
 * so that its group replaces it, or only the instance's own log, for an instance in no group.
 */
export type HealthReporting = 'auto-scaling' | 'log';

/** How long one run of the check may take (systemd stops it then; the next run starts on time). */
const HEALTH_CHECK_TIMEOUT_SECONDS = 60;

/**
 * A check, run every 30 s by a systemd timer, that the enclave is RUNNING, that the KMS
 * vsock-proxy runs, that SGS answers its health endpoint and that the execution context listens on its socket (SGS answers
 * without a context, but serves nothing; a unit can be `active` before its process listens,
 * or between the crashes of a start that keeps failing). After three failures in a row it reports the instance
 * unhealthy (see {@link HealthReporting}). With `--probe` it only checks: exit status 0 when
 * healthy, 1 when not, nothing counted or reported (the boot waits on it before it signals
 * readiness).
 *
 * @param sgsHealthUrl SGS's `GET /health` URL
 */
export function renderHealthCheckScript(enclaveName: string, region: string, sgsHealthUrl: string, reporting: HealthReporting): string {
  return [
    '#!/bin/bash',
    '# Rendered by cdk-enclave-gpu: is the enclave running and SGS serving? Report the instance unhealthy after repeated failures.',
    'set -u',
    `state_file=${HEALTH_STATE_DIR}/failures`,
    `install -d -m 0700 ${HEALTH_STATE_DIR}`,
    `state=$(timeout 20 nitro-cli describe-enclaves 2>/dev/null | python3 -c 'import json,sys; print(next((e.get("State","") for e in json.load(sys.stdin) if e.get("EnclaveName")=="${enclaveName}"), "ABSENT"))' 2>/dev/null || echo UNKNOWN)`,
    `problem=""`,
    `[ "$state" = "RUNNING" ] || problem="enclave ${enclaveName} is $state"`,
    `systemctl is-active --quiet ${VSOCK_PROXY_SERVICE} || problem="\${problem:+$problem; }the KMS vsock-proxy (${VSOCK_PROXY_SERVICE}) is not running"`,
    `curl -sf --max-time 5 -o /dev/null ${sgsHealthUrl} || problem="\${problem:+$problem; }SGS does not answer ${sgsHealthUrl}"`,
    `[ -n "$(ss -xlH src ${CONTEXT_SOCKET} 2>/dev/null)" ] || problem="\${problem:+$problem; }the execution context (${CONTEXT_SERVICE}) does not listen on ${CONTEXT_SOCKET}"`,
    'if [ "${1:-}" = --probe ]; then [ -z "$problem" ] || { echo "$problem"; exit 1; }; exit 0; fi',
    'if [ -z "$problem" ]; then rm -f "$state_file"; exit 0; fi',
    'failures=$(( $(cat "$state_file" 2>/dev/null || echo 0) + 1 ))',
    'echo "$failures" > "$state_file"',
    'echo "$problem (failed check $failures)"',
    `if [ "$failures" -ge ${HEALTH_FAILURES_BEFORE_UNHEALTHY} ]; then`,
    ...(reporting === 'auto-scaling'
      ? reportUnhealthyCommands(region)
      : ['echo "instance unhealthy: it is in no Auto Scaling group, so repair or replace it"']).map((line) => `  ${line}`),
    'fi',
    '',
  ].join('\n');
}

/**
 * The health check's commands that tell EC2 Auto Scaling this instance is unhealthy, so its
 * group replaces it (a call refused, for want of permission, is only logged).
 */
export function reportUnhealthyCommands(region: string): string[] {
  return [...instanceIdCommands('|| true'), setUnhealthyCommand(region, '"$instance_id"', true)];
}

/**
 * `aws autoscaling set-instance-health ... Unhealthy` for the instance `instanceId` (a shell
 * word), a refusal only logged.
 *
 * @param respectGracePeriod false for a boot that failed: no later check can make it healthy
 */
function setUnhealthyCommand(region: string, instanceId: string, respectGracePeriod: boolean): string {
  const grace = respectGracePeriod ? '' : ' --no-should-respect-grace-period';
  return `aws autoscaling set-instance-health --instance-id ${instanceId} --health-status Unhealthy${grace} --region ${region} || echo "not reported to Auto Scaling (refused)"`;
}

/**
 * The boot script's ERR trap (after the functions that print the instance ID and, with
 * `signalling`, signal CloudFormation: instance-metadata.ts, readiness-signal.ts). Any command that fails from here
 * on (an install, a download, the allocator, nitro-cli run-enclave, the wait for readiness)
 * reports the failure at once, before the script stops, since the health check runs only
 * after a boot that succeeded: to CloudFormation (a FAILURE signal, so that a deployment
 * waiting for the instance stops and rolls back instead of waiting out its timeout) and, in
 * a group, to Auto Scaling (unhealthy, not respecting the grace period: no later check can
 * make it healthy).
 */
export function bootFailureTrapCommands(region: string, reporting: HealthReporting, signalling: boolean): string[] {
  return [
    'report_boot_failure() {',
    '  echo "[enclave-gpu] boot failed (line $1, exit $2)"',
    ...(reporting === 'auto-scaling'
      ? [`  ${setUnhealthyCommand(region, `"$(${INSTANCE_ID_FUNCTION})"`, false)}`]
      : []),
    ...(signalling ? [`  ${signalCommand('FAILURE')}`] : []),
    '}',
    'trap \'report_boot_failure $LINENO $?\' ERR',
  ];
}

export function renderHealthService(): string {
  return renderSystemdUnit([
    { name: 'Unit', entries: [['Description', 'Enclave GPU health check (cdk-enclave-gpu)']] },
    // A oneshot has no start timeout by default: one run hung on nitro-cli or the AWS CLI would stop every later one.
    { name: 'Service', entries: [['Type', 'oneshot'], ['ExecStart', HEALTH_SCRIPT_PATH], ['TimeoutStartSec', `${HEALTH_CHECK_TIMEOUT_SECONDS}s`]] },
  ]);
}

export function renderHealthTimer(): string {
  return renderSystemdUnit([
    { name: 'Unit', entries: [['Description', 'Run the enclave GPU health check every 30 s']] },
    // AccuracySec: systemd would otherwise let each run slip by up to a minute.
    { name: 'Timer', entries: [['OnBootSec', '120s'], ['OnUnitActiveSec', '30s'], ['AccuracySec', '1s']] },
    { name: 'Install', entries: [['WantedBy', 'timers.target']] },
  ]);
}
