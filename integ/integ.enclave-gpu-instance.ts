/**
 * Integration test: one EnclaveGpuInstance with its defaults in a new VPC (and so its
 * dashboard, alarms and kernel-attestation log group), with an AttestationBoundKey bound
 * to its image. The log group is kept after the test, like audit records in production.
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
import { App, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import { ExpectedResult, IntegTest } from '@aws-cdk/integ-tests-alpha';
import { EnclaveGpuInstance, EnclaveImage, attestation_kms } from '../lib';

const app = new App();
const stack = new Stack(app, 'EnclaveGpuInstanceInteg');
const vpc = new ec2.Vpc(stack, 'Vpc', { maxAzs: 2, natGateways: 1 });

const enclaveImage = EnclaveImage.fromEifFile(path.join(__dirname, 'fixtures', 'placeholder.eif'));
// A key that goes with the test stack (the default keeps keys): bound to the image's PCRs.
const key = new attestation_kms.AttestationBoundKey(stack, 'ModelKey', {
  pcrs: enclaveImage.pcrs!,
  removalPolicy: RemovalPolicy.DESTROY,
  pendingWindow: Duration.days(7),
});
const inference = new EnclaveGpuInstance(stack, 'Inference', { vpc, enclaveImage, key });

const integ = new IntegTest(app, 'EnclaveGpuInstanceTest', { testCases: [stack] });
integ.assertions
  .awsApiCall('EC2', 'describeInstances', { InstanceIds: [inference.instanceId] })
  .expect(ExpectedResult.objectLike({
    Reservations: [{ Instances: [{ EnclaveOptions: { Enabled: true }, MetadataOptions: { HttpTokens: 'required' } }] }],
  }));
