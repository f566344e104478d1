import { ALLOCATOR_SERVICE, VSOCK_PROXY_SERVICE } from './nitro-cli-services';
import { SGS_SERVICE } from './runtime-services';
import { renderSystemdUnit } from './systemd-unit';

/** The unit that runs the enclave. */
export const ENCLAVE_SERVICE = 'enclave-gpu-enclave.service';
export const ENCLAVE_SERVICE_PATH = `/etc/systemd/system/${ENCLAVE_SERVICE}`;

export interface EnclaveServiceSettings {
  readonly enclaveName: string;
  readonly eifPath: string;
  readonly cpuCount: number;
  readonly memoryMiB: number;
  readonly enclaveCid: number;
  /** Adds `--debug-mode`: the console becomes readable and every PCR reads as zeros. */
  readonly debugMode: boolean;
}

/** The `nitro-cli run-enclave` command line, one argument per element. */
export function runEnclaveArguments(settings: EnclaveServiceSettings): string[] {
  return [
    '/usr/bin/nitro-cli', 'run-enclave',
    '--enclave-name', settings.enclaveName,
    '--eif-path', settings.eifPath,
    '--cpu-count', String(settings.cpuCount),
    '--memory', String(settings.memoryMiB),
    '--enclave-cid', String(settings.enclaveCid),
    ...(settings.debugMode ? ['--debug-mode'] : []),
  ];
}

/**
 * Renders the systemd unit that starts the enclave once the allocator has reserved its
 * CPUs and memory (and after SGS, which it offloads to, and the KMS vsock-proxy), and
 * terminates it on stop.
 */
export function renderEnclaveService(settings: EnclaveServiceSettings): string {
  return renderSystemdUnit([
    {
      name: 'Unit',
      entries: [
        ['Description', `Nitro enclave ${settings.enclaveName} (cdk-enclave-gpu)`],
        // Ordered after the allocator, not pulling it in: its unit is a oneshot, without
        // RemainAfterExit upstream (aws-nitro-enclaves-cli bootstrap/nitro-enclaves-allocator.service;
        // some packagings add it), so Requires= or Wants= could run it again at a start of the
        // enclave, releasing and reserving the enclave's memory after the execution context
        // has started. The allocator runs at boot on its own (enabled, WantedBy=multi-user.target).
        // SGS listens before the enclave starts; the enclave runs without it (KMS needs no SGS).
        // The vsock-proxy is the enclave's only way to KMS: up before the enclave asks for keys.
        ['Wants', `${SGS_SERVICE} ${VSOCK_PROXY_SERVICE} network-online.target`], // ordering After= on a target nothing pulls in would order nothing
        ['After', `${ALLOCATOR_SERVICE} ${SGS_SERVICE} ${VSOCK_PROXY_SERVICE} network-online.target`],
      ],
    },
    {
      name: 'Service',
      entries: [
        ['Type', 'oneshot'],
        ['RemainAfterExit', 'yes'],
        ['ExecStart', runEnclaveArguments(settings).join(' ')],
        ['ExecStop', `/usr/bin/nitro-cli terminate-enclave --enclave-name ${settings.enclaveName}`],
      ],
    },
    {
      name: 'Install',
      entries: [['WantedBy', 'multi-user.target']],
    },
  ]);
}
