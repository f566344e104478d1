/**
 * Integration test: one EnclaveGpuInstance with its defaults in a new VPC.
 *
 * CI verifies the committed snapshot without AWS credentials (`npm run integ`). With
 * credentials for a sandbox account, `npx integ-runner --update-on-failed --force` deploys
 * it, checks through the EC2 API that the instance runs with Nitro Enclaves enabled, and
 * destroys it. The placeholder EIF lets the stack deploy and the instance boot, but it is
 * not a bootable enclave: the enclave unit fails on the instance until you build a real
 * image with `nitro-cli build-enclave` and point the test at it.
 */
import * as path from 'path';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { App, Stack } from 'aws-cdk-lib';
import { ExpectedResult, IntegTest } from '@aws-cdk/integ-tests-alpha';
import { EnclaveGpuInstance, EnclaveImage } from '../lib';

const app = new App();
const stack = new Stack(app, 'EnclaveGpuInstanceInteg');
const vpc = new ec2.Vpc(stack, 'Vpc', { maxAzs: 2, natGateways: 1 });

const inference = new EnclaveGpuInstance(stack, 'Inference', {
  vpc,
  enclaveImage: EnclaveImage.fromEifFile(path.join(__dirname, 'fixtures', 'placeholder.eif')),
});

const integ = new IntegTest(app, 'EnclaveGpuInstanceTest', { testCases: [stack] });
integ.assertions
  .awsApiCall('EC2', 'describeInstances', { InstanceIds: [inference.instanceId] })
  .expect(ExpectedResult.objectLike({
    Reservations: [{ Instances: [{ EnclaveOptions: { Enabled: true }, MetadataOptions: { HttpTokens: 'required' } }] }],
  }));
