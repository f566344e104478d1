/**
 * Integration test: an EnclaveGpuFleet of one to two instances in a new VPC, scaling on the
 * queue depth of its enclave image, with a key deleted with the test.
 *
 * CI verifies the committed snapshot without AWS credentials (`npm run integ`). Deploying it
 * (see the README) checks through the Auto Scaling API that the group runs from its launch
 * template with Nitro Enclaves enabled.
 */
import * as path from 'path';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { App, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import { ExpectedResult, IntegTest } from '@aws-cdk/integ-tests-alpha';
import { EnclaveGpuFleet, EnclaveImage, FleetScaling, attestation_kms } from '../lib';

const app = new App();
const stack = new Stack(app, 'EnclaveGpuFleetInteg');
const vpc = new ec2.Vpc(stack, 'Vpc', { maxAzs: 2, natGateways: 1 });
const enclaveImage = EnclaveImage.fromEifFile(path.join(__dirname, 'fixtures', 'placeholder.eif'));
const key = new attestation_kms.AttestationBoundKey(stack, 'ModelKey', {
  pcrs: enclaveImage.pcrs!,
  removalPolicy: RemovalPolicy.DESTROY,
  pendingWindow: Duration.days(7),
});
const fleet = new EnclaveGpuFleet(stack, 'Inference', {
  vpc,
  enclaveImage,
  key,
  minCapacity: 1,
  maxCapacity: 2,
  scaling: FleetScaling.queueDepth(4),
});

const integ = new IntegTest(app, 'EnclaveGpuFleetTest', { testCases: [stack] });
integ.assertions
  .awsApiCall('EC2', 'describeLaunchTemplateVersions', { LaunchTemplateId: fleet.launchTemplate.launchTemplateId, Versions: ['$Latest'] })
  .expect(ExpectedResult.objectLike({
    LaunchTemplateVersions: [{ LaunchTemplateData: { EnclaveOptions: { Enabled: true }, MetadataOptions: { HttpTokens: 'required' } } }],
  }));
