/**
 * Integration test: an EnclaveGpuFleet of one to two instances in a new VPC, scaling on the
 * queue depth of its enclave image, with a key deleted with the test.
 *
 * CI verifies the committed snapshot without AWS credentials (`npm run integ`). Deploying it
 * (see the README) checks through the Auto Scaling API that the group runs from its launch
 * template with Nitro Enclaves enabled.
 */
import { App } from 'aws-cdk-lib';
import { ExpectedResult, IntegTest } from '@aws-cdk/integ-tests-alpha';
import { EnclaveGpuFleet, FleetScaling } from '../lib';
import { sandboxStack } from './fixtures/sandbox-stack';

const app = new App();
const { stack, vpc, enclaveImage, key, gpuRuntime } = sandboxStack(app, 'EnclaveGpuFleetInteg');
const fleet = new EnclaveGpuFleet(stack, 'Inference', {
  vpc,
  enclaveImage,
  key,
  gpuRuntime,
  minCapacity: 1,
  maxCapacity: 2,
  scaling: FleetScaling.queueDepth(4),
  // The placeholder enclave image and runtime (fixtures/sandbox-stack.ts) cannot run: no instance would signal ready.
  waitForReady: false,
});

const integ = new IntegTest(app, 'EnclaveGpuFleetTest', { testCases: [stack] });
integ.assertions
  .awsApiCall('EC2', 'describeLaunchTemplateVersions', { LaunchTemplateId: fleet.launchTemplate.launchTemplateId, Versions: ['$Latest'] })
  .expect(ExpectedResult.objectLike({
    LaunchTemplateVersions: [{ LaunchTemplateData: { EnclaveOptions: { Enabled: true }, MetadataOptions: { HttpTokens: 'required' } } }],
  }));
