import { givenPcrs, pcrIndex } from '../../attestation-kms/pcr-values';
import { KERNEL_ATTESTATION_LOG_PATH } from '../../observability/metric-catalogue';
import { dirname } from './boot-script';
import { NODE_EXECUTABLE } from './host-packages';
import { renderSystemdUnit } from './systemd-unit';

/**
 * The least `--onnx-memory-limit` the context takes with the one onnxruntime thread it runs
 * here (the runtime's minProcessMemoryLimit(1)): 1 GiB for Node.js 24 and onnxruntime
 * before any model (RLIMIT_DATA counts the address space V8 reserves), and 8 MiB for the
 * thread's stack.
 */
export const MIN_ONNX_MEMORY_LIMIT_BYTES = 1032 * 1024 * 1024;

/** Where the installed runtimes live, one directory per archive SHA-256, and the link to the active one. */
export const RUNTIME_ROOT = '/opt/enclave-gpu/runtime';
export const RUNTIME_CURRENT = `${RUNTIME_ROOT}/current`;
export const EGPU_ENTRY = `${RUNTIME_CURRENT}/egpu.js`;

/** The runtime's configuration, written at boot from the construct's props. */
export const RUNTIME_CONFIG_DIR = '/etc/enclave-gpu';
export const SGS_CONFIG_PATH = `${RUNTIME_CONFIG_DIR}/sgs.json`;
export const CONTEXT_ENV_PATH = `${RUNTIME_CONFIG_DIR}/context.env`;

/** The execution context's socket, in the context's runtime directory (/run/enclave-gpu). */
export const CONTEXT_RUNTIME_DIRECTORY = 'enclave-gpu';
export const CONTEXT_SOCKET = `/run/${CONTEXT_RUNTIME_DIRECTORY}/context.sock`;

export const CONTEXT_SERVICE = 'egpu-context.service';
export const SGS_SERVICE = 'egpu-sgs.service';

/** One system user per process, so SGS cannot read the context's memory (it holds the session keys); the group lets SGS reach the context's socket. */
export const RUNTIME_GROUP = 'egpu';
export const CONTEXT_USER = 'egpu-context';
export const SGS_USER = 'egpu-sgs';

/** The variable of context.env that carries the PCR arguments. */
const CONTEXT_ARGS_VARIABLE = 'EGPU_CONTEXT_ARGS';

/**
 * Sandboxing both services take: no privilege gain, a read-only system (each writes only
 * its systemd-managed runtime, logs or cache directory, which systemd makes writable), no
 * home directories, a private /tmp, no capabilities. `MemoryDenyWriteExecute` is left out:
 * V8's JIT needs writable executable memory.
 */
const HARDENING: ReadonlyArray<readonly [string, string]> = [
  ['NoNewPrivileges', 'yes'],
  ['ProtectSystem', 'strict'],
  ['ProtectHome', 'yes'],
  ['PrivateTmp', 'yes'],
  ['ProtectControlGroups', 'yes'],
  ['ProtectKernelTunables', 'yes'],
  ['RestrictSUIDSGID', 'yes'],
  ['RestrictRealtime', 'yes'],
  ['LockPersonality', 'yes'],
  ['CapabilityBoundingSet', ''],
  ['SystemCallArchitectures', 'native'],
];

/**
 * `egpu-context.service`: the execution context, which holds the session keys and device
 * buffers and runs the kernels. It listens on a Unix socket only SGS's group can reach and
 * admits only enclaves whose attestation carries the PCRs in context.env (written at boot).
 *
 * Keeps the GPU: no `PrivateDevices`, and `nvidia-modprobe` (with full privileges, its
 * failure ignored) creates `/dev/nvidia-uvm` before the unprivileged process first needs it.
 */
export function renderContextService(): string {
  return renderSystemdUnit([
    {
      name: 'Unit',
      entries: [
        ['Description', 'Enclave GPU execution context: session keys, device buffers, kernels (cdk-enclave-gpu)'],
        ['ConditionPathExists', CONTEXT_ENV_PATH],
      ],
    },
    {
      name: 'Service',
      entries: [
        ['Type', 'simple'],
        ['User', CONTEXT_USER],
        ['Group', RUNTIME_GROUP],
        ['EnvironmentFile', CONTEXT_ENV_PATH],
        ['Environment', `CUDA_CACHE_PATH=/var/cache/${CONTEXT_USER}`],
        ['ExecStartPre', '-+/usr/bin/nvidia-modprobe -u -c 0'],
        ['ExecStart', `${NODE_EXECUTABLE} ${EGPU_ENTRY} context --listen unix:${CONTEXT_SOCKET} --root aws $${CONTEXT_ARGS_VARIABLE}`],
        ['Restart', 'on-failure'],
        ['RestartSec', '2s'],
        // The kernel's out-of-memory killer ends only the process it picks (the onnx worker
        // process offers itself first), not the whole unit, systemd's default.
        ['OOMPolicy', 'continue'],
        ['RuntimeDirectory', CONTEXT_RUNTIME_DIRECTORY],
        ['RuntimeDirectoryMode', '0750'],
        ['CacheDirectory', CONTEXT_USER],
        // The socket gets mode 0770: SGS (group egpu) may connect, nobody else.
        ['UMask', '0007'],
        ...HARDENING,
      ],
    },
    { name: 'Install', entries: [['WantedBy', 'multi-user.target']] },
  ]);
}

/**
 * `egpu-sgs.service`: the Secure GPU Scheduler, which admits enclaves over vsock, relays
 * ciphertext to the context, publishes metrics and appends the kernel-attestation log.
 * Needs the context (and is restarted with it), stops gracefully (SIGTERM drains).
 */
export function renderSgsService(): string {
  return renderSystemdUnit([
    {
      name: 'Unit',
      entries: [
        ['Description', 'Enclave GPU Secure GPU Scheduler (SGS) (cdk-enclave-gpu)'],
        ['Requires', CONTEXT_SERVICE],
        ['After', `${CONTEXT_SERVICE} network-online.target`],
        ['Wants', 'network-online.target'],
        ['ConditionPathExists', SGS_CONFIG_PATH],
      ],
    },
    {
      name: 'Service',
      entries: [
        ['Type', 'simple'],
        ['User', SGS_USER],
        ['Group', RUNTIME_GROUP],
        ['ExecStart', `${NODE_EXECUTABLE} ${EGPU_ENTRY} sgs --config ${SGS_CONFIG_PATH}`],
        ['Restart', 'on-failure'],
        ['RestartSec', '2s'],
        // SIGTERM drains for up to drainTimeoutMs (30 s) and flushes metrics (10 s at most).
        ['TimeoutStopSec', '60s'],
        ['LogsDirectory', logsDirectoryName()],
        ['LogsDirectoryMode', '0750'],
        ['RestrictAddressFamilies', 'AF_UNIX AF_INET AF_INET6 AF_VSOCK'],
        ['ProtectKernelModules', 'yes'],
        ...HARDENING,
      ],
    },
    { name: 'Install', entries: [['WantedBy', 'multi-user.target']] },
  ]);
}

/** The directory under /var/log that holds the kernel-attestation log, which SGS owns. */
function logsDirectoryName(): string {
  const dir = dirname(KERNEL_ATTESTATION_LOG_PATH);
  if (!dir.startsWith('/var/log/')) throw new Error(`the kernel-attestation log ${KERNEL_ATTESTATION_LOG_PATH} must be under /var/log`);
  return dir.slice('/var/log/'.length);
}

/** PCR values the execution context requires of every enclave (`--expect-pcr N=HEX`). */
export interface ContextPcrs {
  readonly pcr0: string;
  readonly pcr1: string;
  readonly pcr2: string;
  readonly pcr8?: string;
}

/**
 * `/etc/enclave-gpu/context.env`: the context's `--expect-pcr` arguments, from the enclave
 * image's PCRs, and `--onnx-worker` and `--onnx-memory-limit` when asked (with both, the
 * limit's worker process is where models run).
 */
export function renderContextEnvironment(pcrs: ContextPcrs, options: { readonly onnxWorkerThread?: boolean; readonly onnxMemoryLimitBytes?: number } = {}): string {
  const args = givenPcrs(pcrs).map(([field, value]) => `--expect-pcr ${pcrIndex(field)}=${value}`);
  if (options.onnxWorkerThread) args.push('--onnx-worker');
  if (options.onnxMemoryLimitBytes !== undefined) args.push(`--onnx-memory-limit ${options.onnxMemoryLimitBytes}`);
  return [
    '# Rendered by cdk-enclave-gpu: the measurements every enclave must attest to the execution context.',
    `${CONTEXT_ARGS_VARIABLE}=${args.join(' ')}`,
    '',
  ].join('\n');
}
