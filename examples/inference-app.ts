/**
 * The example app of the README: a VPC and one EnclaveGpuInstance.
 *
 * `npm run demo` synthesizes it. Set ENCLAVE_EIF to the path of your own enclave image
 * (`nitro-cli build-enclave --output-file ...`); by default it uses a placeholder EIF that
 * synthesizes but does not boot as an enclave: a deployment of it fails at
 * `nitro-cli run-enclave`, the boot signals FAILURE and the deployment rolls back.
 */
import * as path from 'path';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { App, Stack } from 'aws-cdk-lib';
import { EnclaveGpuInstance, EnclaveImage } from '../lib';

export const PLACEHOLDER_EIF = path.join(__dirname, '..', 'integ', 'fixtures', 'placeholder.eif');

export function buildInferenceApp(options: { eifPath?: string; outdir?: string } = {}): { app: App; stack: Stack; inference: EnclaveGpuInstance } {
  const app = new App({ outdir: options.outdir });
  const stack = new Stack(app, 'EnclaveGpuInference');

  const vpc = new ec2.Vpc(stack, 'Vpc', {
    maxAzs: 2,
    natGateways: 1,
    flowLogs: { All: { destination: ec2.FlowLogDestination.toCloudWatchLogs() } },
  });
  const inference = new EnclaveGpuInstance(stack, 'Inference', {
    vpc,
    instanceType: new ec2.InstanceType('g5.2xlarge'),
    enclave: { cpuCount: 4, memoryMiB: 16384 },
    enclaveImage: EnclaveImage.fromEifFile(options.eifPath ?? PLACEHOLDER_EIF),
  });
  return { app, stack, inference };
}

if (require.main === module) {
  buildInferenceApp({ eifPath: process.env.ENCLAVE_EIF }).app.synth();
}
