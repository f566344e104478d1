import { renderSystemdUnit } from './systemd-unit';

/** Where vsock-proxy reads the endpoints it may forward to (`--config`). */
export const VSOCK_PROXY_CONFIG_PATH = '/etc/nitro_enclaves/vsock-proxy.yaml';

/** systemd drop-in that pins the packaged vsock-proxy service to our endpoint and allowlist. */
export const VSOCK_PROXY_DROP_IN_PATH = '/etc/systemd/system/nitro-enclaves-vsock-proxy.service.d/enclave-gpu.conf';

/**
 * Connections the proxy serves at once (`--num_workers`): each holds a worker thread until it
 * closes, and a connection beyond them is accepted but waits. vsock-proxy's default is 4,
 * fewer than an SDK client's pool of keep-alive connections.
 */
export const VSOCK_PROXY_WORKERS = 32;

/** A host and port the enclave may reach through the parent's vsock-proxy. */
export interface ProxyEndpoint {
  readonly address: string;
  readonly port: number;
}

/**
 * Renders the vsock-proxy allowlist. Only the endpoints given are listed: the package's
 * default file allows the KMS endpoints of every region, we allow the stack's region only.
 */
export function renderVsockProxyAllowlist(endpoints: readonly ProxyEndpoint[]): string {
  return ['allowlist:', ...endpoints.map((e) => `- {address: ${e.address}, port: ${e.port}}`), ''].join('\n');
}

/**
 * Renders the drop-in that replaces the packaged service's ExecStart (which derives the
 * region from instance metadata and assumes the `amazonaws.com` suffix) with the endpoint
 * the stack computed, so the proxy target and the allowlist always agree; serves
 * VSOCK_PROXY_WORKERS connections at once, and is restarted whenever it stops, 5 s apart (a
 * failure such as an unresolvable endpoint while the network comes up would otherwise exhaust
 * systemd's start limit within a second and leave it failed).
 */
export function renderVsockProxyDropIn(localVsockPort: number, target: ProxyEndpoint): string {
  return renderSystemdUnit([
    {
      name: 'Service',
      entries: [
        ['ExecStart', ''],
        ['ExecStart', `/usr/bin/vsock-proxy ${localVsockPort} ${target.address} ${target.port} --num_workers ${VSOCK_PROXY_WORKERS} --config ${VSOCK_PROXY_CONFIG_PATH}`],
        ['Restart', 'always'],
        ['RestartSec', '5s'],
      ],
    },
  ]);
}
