import { AGENT_CTL } from '../../observability/cloudwatch-agent-config';
import { NITRO_CLI_PACKAGE } from './nitro-cli-services';

/**
 * The Node.js major version SGS and the execution context run on: 24, a long-term-support
 * line until April 2028 (Node.js 20's ended in April 2026, and Amazon Linux follows the
 * upstream schedule). CI runs the runtime's tests on a Node.js 24 binary as well as on the
 * build's own Node.js (.ci/run).
 */
export const NODE_MAJOR = 24;
/** The namespaced executable: it stays this version whatever `node` points to. */
export const NODE_EXECUTABLE = `/usr/bin/node-${NODE_MAJOR}`;
export const NPM_COMMAND = `npm-${NODE_MAJOR}`;

/**
 * The packages an enclave parent needs, installed only where missing: the commands the boot
 * script runs and the AMI build (EnclaveGpuImage) bakes in, from this one list, so a baked
 * image makes the boot-time install a no-op.
 *
 * Node.js comes from Amazon Linux 2023's repository, where each major version is its own
 * package (`nodejs24`, `nodejs24-npm`) with namespaced executables (`node-24`, `npm-24`).
 */
export const HOST_PACKAGE_INSTALLS: ReadonlyArray<{ readonly package: string; readonly command: string }> = [
  { package: NITRO_CLI_PACKAGE, command: `command -v nitro-cli >/dev/null 2>&1 || dnf install -y ${NITRO_CLI_PACKAGE}` },
  { package: 'amazon-cloudwatch-agent', command: `test -x ${AGENT_CTL} || dnf install -y amazon-cloudwatch-agent` },
  { package: `nodejs${NODE_MAJOR}`, command: `test -x ${NODE_EXECUTABLE} || dnf install -y nodejs${NODE_MAJOR}` },
  { package: `nodejs${NODE_MAJOR}-npm`, command: `test -x /usr/bin/${NPM_COMMAND} || dnf install -y nodejs${NODE_MAJOR}-npm` },
  { package: 'logrotate', command: 'command -v logrotate >/dev/null 2>&1 || dnf install -y logrotate' },
];

export function installCommand(packageName: string): string {
  const install = HOST_PACKAGE_INSTALLS.find((p) => p.package === packageName);
  if (!install) throw new Error(`no install command for ${packageName}`);
  return install.command;
}
