import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { App, Stack } from 'aws-cdk-lib';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Template } from 'aws-cdk-lib/assertions';
import { GPU_RUNTIME_DIRECTORY_CONTEXT } from '../../lib/enclave-gpu-instance/gpu-runtime';
import { cfnValueAsText } from '../../scripts/template-text';

/** A stand-in runtime directory (one small egpu.js): tests do not read, or race with builds of, assets/gpu-runtime/dist. */
export const FIXTURE_RUNTIME_DIR = path.join(__dirname, '..', 'fixtures', 'gpu-runtime');

/**
 * A stack in a fixed account and region, with a VPC that has private subnets with egress, in
 * an app whose constructs default to the fixture runtime.
 */
export function testStack(): { app: App; stack: Stack; vpc: ec2.Vpc } {
  const app = new App({ context: { [GPU_RUNTIME_DIRECTORY_CONTEXT]: FIXTURE_RUNTIME_DIR } });
  const stack = new Stack(app, 'TestStack', { env: { account: '123456789012', region: 'us-east-1' } });
  const vpc = new ec2.Vpc(stack, 'Vpc', { maxAzs: 1, natGateways: 1 });
  return { app, stack, vpc };
}

/** The user data of the template's one instance, as text (see cfnValueAsText). */
export function userDataOf(template: Template): string {
  const instances = Object.values(template.findResources('AWS::EC2::Instance'));
  if (instances.length !== 1) {
    throw new Error(`expected one AWS::EC2::Instance, found ${instances.length}`);
  }
  return cfnValueAsText(instances[0].Properties.UserData);
}

/** The text of a file a script writes with a quoted here-document ending at `delimiter`; throws when it is not written. */
export function hereDocument(script: string, file: string, delimiter = 'ENCLAVE_GPU_EOF'): string {
  const match = new RegExp(`cat > '${file.replace(/[.]/g, '\\.')}' <<'${delimiter}'\\n([\\s\\S]*?)${delimiter}`).exec(script);
  if (match === null) throw new Error(`${file} is not written`);
  return match[1];
}

/**
 * The runtime install script a boot script fetches: the file staged for the asset, found by
 * the SHA-256 the boot script checks it against (so it is exactly what the instance runs).
 */
export function runtimeInstallerOf(userData: string): string {
  const match = /echo '([0-9a-f]{64}) {2}\/usr\/local\/libexec\/enclave-gpu\/install-runtime\.new' \| sha256sum --check --strict -/.exec(userData);
  if (match === null) throw new Error('the boot script fetches no runtime install script');
  const script = fs.readFileSync(path.join(os.tmpdir(), 'cdk-enclave-gpu-installer', `${match[1]}.sh`));
  if (crypto.createHash('sha256').update(script).digest('hex') !== match[1]) throw new Error(`the staged install script ${match[1]}.sh has other content`);
  return script.toString('utf8');
}
