import { KERNEL_ATTESTATION_LOG_PATH } from '../../observability/metric-catalogue';
import { CONTEXT_SOCKET, ContextPcrs } from './runtime-services';

/**
 * VMADDR_CID_ANY: SGS listens on the parent's vsock for every enclave of the instance (the
 * enclave reaches its parent at CID 3).
 */
export const VSOCK_CID_ANY = 4294967295;

/** What the boot script substitutes with the instance id (IMDSv2) before SGS starts. SGS refuses the file while it is still there. */
export const INSTANCE_ID_PLACEHOLDER = '@@EC2_INSTANCE_ID@@';

export interface SgsConfigSettings {
  /** The vsock port enclaves connect to. */
  readonly enclaveVsockPort: number;
  /** The one enclave image SGS admits. */
  readonly pcrs: ContextPcrs;
  /** The loopback port of the HTTP health endpoint. */
  readonly healthPort: number;
  /** Publish EnclaveGPU metrics to CloudWatch in this region, or undefined for none. */
  readonly metricsRegion?: string;
}

/**
 * `/etc/enclave-gpu/sgs.json`, in the schema `egpu sgs --config` accepts
 * (assets/gpu-runtime/src/sgs/config.ts): vsock for enclaves, the context's Unix socket, the
 * AWS Nitro root, the image's PCR0-2 as the only allowlist entry, and the kernel-attestation
 * log where the CloudWatch agent ships it from. Limits not set here take SGS's defaults.
 */
export function renderSgsConfig(settings: SgsConfigSettings): string {
  const config = {
    enclaveListen: `vsock:${VSOCK_CID_ANY}:${settings.enclaveVsockPort}`,
    context: `unix:${CONTEXT_SOCKET}`,
    root: 'aws',
    allowlist: [{ pcr0: settings.pcrs.pcr0, pcr1: settings.pcrs.pcr1, pcr2: settings.pcrs.pcr2, partition: 'default' }],
    health: `tcp:127.0.0.1:${settings.healthPort}`,
    ...(settings.metricsRegion !== undefined ? { metrics: { enabled: true, region: settings.metricsRegion, instanceId: INSTANCE_ID_PLACEHOLDER } } : {}),
    kernelAttestationLog: KERNEL_ATTESTATION_LOG_PATH,
  };
  return `${JSON.stringify(config, undefined, 2)}\n`;
}
