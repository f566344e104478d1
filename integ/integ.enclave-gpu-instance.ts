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
 * image with `nitro-cli build-enclave` and point the test at it. Likewise the placeholder
 * runtime installs but egpu-context and egpu-sgs fail to start; drop the `gpuRuntime` prop
 * (the default is the bundled runtime) to deploy the real one. With both real, drop
 * `waitForReady: false` too, and the deployment waits until the instance is ready.
 */
import { App } from 'aws-cdk-lib';
import { ExpectedResult, IntegTest } from '@aws-cdk/integ-tests-alpha';
import { EnclaveGpuInstance } from '../lib';
import { sandboxStack } from './fixtures/sandbox-stack';

const app = new App();
const { stack, vpc, enclaveImage, key, gpuRuntime } = sandboxStack(app, 'EnclaveGpuInstanceInteg');
// waitForReady off: the placeholder enclave image and runtime cannot run, so the instance would never signal ready.
const inference = new EnclaveGpuInstance(stack, 'Inference', { vpc, enclaveImage, key, gpuRuntime, waitForReady: false });

const integ = new IntegTest(app, 'EnclaveGpuInstanceTest', { testCases: [stack] });
integ.assertions
  .awsApiCall('EC2', 'describeInstances', { InstanceIds: [inference.instanceId] })
  .expect(ExpectedResult.objectLike({
    Reservations: [{ Instances: [{ EnclaveOptions: { Enabled: true }, MetadataOptions: { HttpTokens: 'required' } }] }],
  }));
