import { AGENT_CONFIG_PATH, AGENT_CTL } from '../../observability/cloudwatch-agent-config';
import { KERNEL_ATTESTATION_LOG_PATH } from '../../observability/metric-catalogue';
import { ALLOCATOR_CONFIG_PATH, renderAllocatorConfig } from './allocator-config';
import { BootScript, CheckedS3Object, dirname, s3CopyCommand, sha256CheckCommand } from './boot-script';
import { LOG_ROTATION_PATH, renderLogRotation } from './log-rotation';
import { EnclaveResourceSettings } from './enclave-resource-settings';
import { installCommand } from './host-packages';
import { ENCLAVE_SERVICE, ENCLAVE_SERVICE_PATH, renderEnclaveService } from './enclave-service';
import {
  HEALTH_SCRIPT_PATH,
  HEALTH_SERVICE,
  HEALTH_TIMER,
  HealthReporting,
  bootFailureTrapCommands,
  renderHealthCheckScript,
  renderHealthService,
  renderHealthTimer,
} from './health-monitor';
import { INSTANCE_ID_FUNCTION, instanceIdFunctionCommands } from './instance-metadata';
import { ReadinessSignal, signalCommand, signalFunctionCommands, waitUntilReadyCommands } from './readiness-signal';
import { RuntimeArchiveLocation, runtimeInstallerDownloadCommands } from './runtime-install';
import {
  CONTEXT_ENV_PATH,
  CONTEXT_SERVICE,
  ContextPcrs,
  RUNTIME_GROUP,
  SGS_CONFIG_PATH,
  SGS_SERVICE,
  renderContextEnvironment,
} from './runtime-services';
import { INSTANCE_ID_PLACEHOLDER, renderSgsConfig } from './sgs-config';
import { ALLOCATOR_SERVICE, NITRO_CLI_PACKAGE, VSOCK_PROXY_SERVICE } from './nitro-cli-services';
import {
  ProxyEndpoint,
  VSOCK_PROXY_CONFIG_PATH,
  VSOCK_PROXY_DROP_IN_PATH,
  renderVsockProxyAllowlist,
  renderVsockProxyDropIn,
} from './vsock-proxy-config';

/** Where the boot script puts the enclave image file. */
export const EIF_PATH = '/opt/enclave-gpu/enclave.eif';


/** Everything the enclave's boot configuration is rendered from. */
export interface EnclaveBootSettings {
  readonly enclave: EnclaveResourceSettings;
  readonly enclaveName: string;
  readonly enclaveCid: number;
  readonly debugMode: boolean;
  /** The enclave image file in S3, with its SHA-256 to check after download. */
  readonly eif: CheckedS3Object;
  /** The KMS endpoint of the stack's region, the only endpoint the enclave may reach. */
  readonly kmsEndpoint: ProxyEndpoint;
  /** The vsock port on the parent that forwards to KMS. */
  readonly kmsProxyVsockPort: number;
  /** The region, for the health check's Auto Scaling call. */
  readonly region: string;
  /** Who hears that the instance is unhealthy: its Auto Scaling group, or only its log. */
  readonly healthReporting: HealthReporting;
  /** Where the instance signals that it is ready (or that its boot failed), if anything waits for it. */
  readonly readiness?: BootReadiness;
  /** The CloudWatch agent configuration (JSON), or undefined to leave the agent alone. */
  readonly cloudWatchAgentConfig?: string;
  /** The gpu-runtime archive to install, and the install script that installs it. */
  readonly runtime: { readonly archive: RuntimeArchiveLocation; readonly installer: CheckedS3Object };
  /** What SGS and the execution context are configured with. */
  readonly sgs: SgsBootSettings;
}

/** CloudFormation waits for the instance: the boot waits until it is ready, then signals. */
export interface BootReadiness {
  readonly signal: ReadinessSignal;
  /**
   * How long into the boot script the instance may still wait to be ready before it signals
   * FAILURE (somewhat less than CloudFormation's timeout, so the failure is reported as one).
   */
  readonly deadlineSeconds: number;
}

/** The runtime's configuration: which enclave image SGS and the execution context admit, where SGS listens, and how the context runs models. */
export interface SgsBootSettings {
  /** The enclave image's PCRs: SGS's allowlist (PCR0-2) and the context's expected values. */
  readonly pcrs: ContextPcrs;
  /** The vsock port SGS listens on for enclaves. */
  readonly enclaveVsockPort: number;
  /** The loopback port of SGS's health endpoint, which the health check queries. */
  readonly healthPort: number;
  /** Publish EnclaveGPU metrics (in the stack's region). */
  readonly publishMetrics: boolean;
  /** The execution context runs onnx.run's models in a worker thread (`--onnx-worker`). */
  readonly onnxWorkerThread?: boolean;
  /** ... or in a worker process with this data-memory limit (`--onnx-memory-limit`). */
  readonly onnxMemoryLimitBytes?: number;
}

/**
 * Renders the boot script of a parent instance: installs nitro-cli (unless the image has
 * it), writes the allocator, vsock-proxy and enclave configuration, fetches and checks the
 * enclave image, installs the gpu-runtime (a no-op on an AMI that baked it) and starts SGS
 * and the execution context with their configuration, then the enclave; then waits until the
 * enclave runs and SGS answers, and signals CloudFormation that the instance is ready.
 *
 * The single builder behind every construct that launches enclave parents, so the same
 * settings always render the same bytes.
 */
export function renderEnclaveBootScript(settings: EnclaveBootSettings): string[] {
  const { readiness } = settings;
  // First: what a failing command reports the failure with (the instance's ID, the signal to CloudFormation), and the trap.
  const script = new BootScript().run(
    ...instanceIdFunctionCommands(),
    ...(readiness ? signalFunctionCommands(readiness.signal, settings.region) : []),
    ...bootFailureTrapCommands(settings.region, settings.healthReporting, readiness !== undefined),
  );
  if (settings.cloudWatchAgentConfig !== undefined) {
    // First, so that the logs of a boot that fails later still reach CloudWatch.
    script
      .step('installing and starting the CloudWatch agent')
      .run(installCommand('amazon-cloudwatch-agent'))
      .run(`install -d -m 0750 ${dirname(KERNEL_ATTESTATION_LOG_PATH)}`)
      .writeFile({ path: AGENT_CONFIG_PATH, content: settings.cloudWatchAgentConfig, mode: '0644' })
      .run(`${AGENT_CTL} -a fetch-config -m ec2 -s -c file:${AGENT_CONFIG_PATH}`);
  }
  script
    .step('installing the Nitro Enclaves CLI')
    .run(installCommand(NITRO_CLI_PACKAGE))
    .step('writing the enclave configuration')
    .writeFile({ path: ALLOCATOR_CONFIG_PATH, content: renderAllocatorConfig(settings.enclave), mode: '0644' })
    .writeFile({ path: VSOCK_PROXY_CONFIG_PATH, content: renderVsockProxyAllowlist([settings.kmsEndpoint]), mode: '0644' })
    .writeFile({
      path: VSOCK_PROXY_DROP_IN_PATH,
      content: renderVsockProxyDropIn(settings.kmsProxyVsockPort, settings.kmsEndpoint),
      mode: '0644',
    })
    .writeFile({
      path: ENCLAVE_SERVICE_PATH,
      content: renderEnclaveService({
        enclaveName: settings.enclaveName,
        eifPath: EIF_PATH,
        cpuCount: settings.enclave.cpuCount,
        memoryMiB: settings.enclave.memoryMiB,
        enclaveCid: settings.enclaveCid,
        debugMode: settings.debugMode,
      }),
      mode: '0644',
    })
    .step('fetching the enclave image')
    .run(
      // Others may traverse to the runtime below it; the image file itself is root's.
      'install -d -m 0711 /opt/enclave-gpu',
      s3CopyCommand(settings.eif, EIF_PATH),
      `chmod 0600 ${EIF_PATH}`,
      sha256CheckCommand(settings.eif, EIF_PATH),
    )
    .step('installing the enclave GPU runtime')
    .run(...runtimeInstallerDownloadCommands(settings.runtime.installer, settings.runtime.archive))
    .step('rotating the kernel-attestation log')
    .run(installCommand('logrotate'))
    .writeFile({ path: LOG_ROTATION_PATH, content: renderLogRotation(), mode: '0644' })
    .step('configuring and starting the execution context and SGS')
    .writeFile({ path: CONTEXT_ENV_PATH, content: renderContextEnvironment(settings.sgs.pcrs, { onnxWorkerThread: settings.sgs.onnxWorkerThread, onnxMemoryLimitBytes: settings.sgs.onnxMemoryLimitBytes }), mode: '0644' })
    .writeFile({
      path: SGS_CONFIG_PATH,
      content: renderSgsConfig({
        enclaveVsockPort: settings.sgs.enclaveVsockPort,
        pcrs: settings.sgs.pcrs,
        healthPort: settings.sgs.healthPort,
        metricsRegion: settings.sgs.publishMetrics ? settings.region : undefined,
      }),
      mode: '0640',
    })
    .run(
      `instance_id=$(${INSTANCE_ID_FUNCTION})`,
      `sed -i "s/${INSTANCE_ID_PLACEHOLDER}/$instance_id/" ${SGS_CONFIG_PATH}`,
      `chgrp ${RUNTIME_GROUP} ${SGS_CONFIG_PATH}`,
    )
    // The allocator first: it reserves the enclave's memory before the context takes any.
    .step('starting the allocator, the KMS vsock-proxy, the execution context, SGS and the enclave')
    .run(
      'systemctl daemon-reload',
      // Restarted, not `enable --now`: an allocator already active (an AMI that enabled it; some
      // packagings keep it active once it ran) would otherwise keep its earlier sizing.
      `systemctl enable ${ALLOCATOR_SERVICE}`,
      `systemctl restart ${ALLOCATOR_SERVICE}`,
      `systemctl enable --now ${VSOCK_PROXY_SERVICE}`,
      // Without blocking: a runtime that fails to start must not keep the enclave down; the health check reports it.
      `systemctl enable ${CONTEXT_SERVICE} ${SGS_SERVICE}`,
      `systemctl restart --no-block ${CONTEXT_SERVICE} ${SGS_SERVICE}`,
      `systemctl enable --now ${ENCLAVE_SERVICE}`,
    )
    .step('installing the health check')
    .writeFile({
      path: HEALTH_SCRIPT_PATH,
      content: renderHealthCheckScript(settings.enclaveName, settings.region, `http://127.0.0.1:${settings.sgs.healthPort}/health`, settings.healthReporting),
      mode: '0755',
    })
    .writeFile({ path: `/etc/systemd/system/${HEALTH_SERVICE}`, content: renderHealthService(), mode: '0644' })
    .writeFile({ path: `/etc/systemd/system/${HEALTH_TIMER}`, content: renderHealthTimer(), mode: '0644' });
  if (readiness === undefined) {
    return script.run('systemctl daemon-reload', `systemctl enable --now ${HEALTH_TIMER}`).step('boot done').render();
  }
  return script
    .step('waiting for the enclave and the KMS proxy to run, SGS to answer and the context to start')
    .run(...waitUntilReadyCommands(`${HEALTH_SCRIPT_PATH} --probe`, readiness.deadlineSeconds))
    // Only now: a check that counted failures during the wait could report a booting instance unhealthy.
    .run('systemctl daemon-reload', `systemctl enable --now ${HEALTH_TIMER}`)
    .step('ready: signalling CloudFormation')
    .run(signalCommand('SUCCESS'))
    .render();
}
