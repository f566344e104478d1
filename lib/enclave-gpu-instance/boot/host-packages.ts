import { AGENT_CTL } from '../../observability/cloudwatch-agent-config';
import { NITRO_CLI_PACKAGE } from './nitro-cli-services';

/**
 * The packages an enclave parent needs, installed only where missing: the commands the boot
 * script runs and the AMI build (EnclaveGpuImage) bakes in, from this one list, so a baked
 * image makes the boot-time install a no-op.
 *
 * Node.js 20 comes from Amazon Linux 2023's repository, where each major version is its own
 * package (`nodejs20`, `nodejs20-npm`) with namespaced executables (`node-20`, `npm-20`).
 */
export const HOST_PACKAGE_INSTALLS: ReadonlyArray<{ readonly package: string; readonly command: string }> = [
  { package: NITRO_CLI_PACKAGE, command: `command -v nitro-cli >/dev/null 2>&1 || dnf install -y ${NITRO_CLI_PACKAGE}` },
  { package: 'amazon-cloudwatch-agent', command: `test -x ${AGENT_CTL} || dnf install -y amazon-cloudwatch-agent` },
  { package: 'nodejs20', command: 'test -x /usr/bin/node-20 || dnf install -y nodejs20' },
  { package: 'nodejs20-npm', command: 'test -x /usr/bin/npm-20 || dnf install -y nodejs20-npm' },
  { package: 'logrotate', command: 'command -v logrotate >/dev/null 2>&1 || dnf install -y logrotate' },
];

export function installCommand(packageName: string): string {
  const install = HOST_PACKAGE_INSTALLS.find((p) => p.package === packageName);
  if (!install) throw new Error(`no install command for ${packageName}`);
  return install.command;
}
