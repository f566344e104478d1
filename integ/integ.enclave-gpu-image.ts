/**
 * Integration test: an EnclaveGpuImage built by EC2 Image Builder and a one-instance fleet
 * launched from it.
 *
 * CI verifies the committed snapshot without AWS credentials (`npm run integ`). A real
 * deployment builds the AMI (about 30 to 45 minutes) before the fleet launches; the
 * assertion checks the built image is available.
 */
import { App } from 'aws-cdk-lib';
import { ExpectedResult, IntegTest } from '@aws-cdk/integ-tests-alpha';
import { EnclaveGpuFleet, EnclaveGpuImage, FleetScaling } from '../lib';
import { sandboxStack } from './fixtures/sandbox-stack';

const app = new App();
const { stack, vpc, enclaveImage, key, gpuRuntime } = sandboxStack(app, 'EnclaveGpuImageInteg');
const ami = new EnclaveGpuImage(stack, 'Ami', { vpc, gpuRuntime });
// waitForReady off: the placeholder enclave image and runtime (fixtures/sandbox-stack.ts) cannot run, so no instance would signal ready.
new EnclaveGpuFleet(stack, 'Inference', { vpc, enclaveImage, key, gpuRuntime, machineImage: ami, maxCapacity: 2, scaling: FleetScaling.none(), waitForReady: false });

const integ = new IntegTest(app, 'EnclaveGpuImageTest', { testCases: [stack] });
integ.assertions
  .awsApiCall('EC2', 'describeImages', { ImageIds: [ami.imageId] })
  .expect(ExpectedResult.objectLike({ Images: [{ State: 'available' }] }));
