import { AGENT_CTL } from '../../observability/cloudwatch-agent-config';
import { NITRO_CLI_PACKAGE } from './nitro-cli-services';

/**
 * The packages an enclave parent needs, installed only where missing: the commands the boot
 * script runs and the AMI build (EnclaveGpuImage) bakes in, from this one list, so a baked
 * image makes the boot-time install a no-op.
 */
export const HOST_PACKAGE_INSTALLS: ReadonlyArray<{ readonly package: string; readonly command: string }> = [
  { package: NITRO_CLI_PACKAGE, command: `command -v nitro-cli >/dev/null 2>&1 || dnf install -y ${NITRO_CLI_PACKAGE}` },
  { package: 'amazon-cloudwatch-agent', command: `test -x ${AGENT_CTL} || dnf install -y amazon-cloudwatch-agent` },
];

export function installCommand(packageName: string): string {
  const install = HOST_PACKAGE_INSTALLS.find((p) => p.package === packageName);
  if (!install) throw new Error(`no install command for ${packageName}`);
  return install.command;
}
