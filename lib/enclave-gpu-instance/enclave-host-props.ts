import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Duration, Size } from 'aws-cdk-lib';
import { AttestationBoundKey } from '../attestation-kms/attestation-bound-key';
import { EnclaveGpuObservability } from '../observability/enclave-gpu-observability';
import { EnclaveImage } from './enclave-image';
import { GpuRuntime } from './gpu-runtime';
import { EnclaveResources } from './enclave-resources';

/**
 * What every parent of a GPU enclave needs, one instance (`EnclaveGpuInstance`) or a fleet
 * (`EnclaveGpuFleet`): both render the same boot configuration from these.
 */
export interface EnclaveHostProps {
  /**
   * The VPC to launch the instances in.
   */
  readonly vpc: ec2.IVpc;

  /**
   * The enclave image file the instance runs in its Nitro enclave.
   */
  readonly enclaveImage: EnclaveImage;

  /**
   * The instance type: a GPU instance type that supports Nitro Enclaves (families g4dn,
   * g5, g6, g6e and gr6 in the checked-in catalogue).
   *
   * @default g5.2xlarge (8 vCPUs, 32 GiB, one NVIDIA A10G)
   */
  readonly instanceType?: ec2.InstanceType;

  /**
   * Allow an instance type that is not in the catalogue. The enclave's vCPU and memory
   * checks against the instance's size are then skipped; check them yourself.
   *
   * @default false
   */
  readonly allowUnlistedInstanceType?: boolean;

  /**
   * vCPUs and memory reserved for the enclave.
   *
   * @default - 2 vCPUs and 4096 MiB
   */
  readonly enclave?: EnclaveResources;

  /**
   * The AMI. It must be Amazon Linux 2023 based (the boot script uses `dnf`), x86_64 for
   * the catalogue's instance types, with the NVIDIA driver installed.
   *
   * @default - the AWS Deep Learning Base OSS Nvidia Driver GPU AMI (Amazon Linux 2023),
   * resolved at deploy time from the public SSM parameter
   * `/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-amazon-linux-2023/latest/ami-id`
   */
  readonly machineImage?: ec2.IMachineImage;

  /**
   * Where in the VPC to place the instance. It needs outbound HTTPS to Systems Manager,
   * S3, KMS and CloudWatch (through a NAT gateway or VPC endpoints).
   *
   * @default - private subnets with egress
   */
  readonly vpcSubnets?: ec2.SubnetSelection;

  /**
   * The instance role, trusted by `ec2.amazonaws.com`. The construct attaches a policy
   * with exactly what the instance needs: the Session Manager channel actions, read access
   * to the enclave image object, the gpu-runtime archive object and its install script
   * object, `cloudwatch:PutMetricData` in
   * the `EnclaveGPU` namespace only, writing to the kernel-attestation and boot log groups (with
   * observability on), and `cloudformation:SignalResource` on this stack; and a second policy
   * with the enclave's use of the key (see `key`). It must be a role of the stack's account
   * (an instance profile takes no other): one known to be of another is refused.
   *
   * @default - a new role
   */
  readonly role?: iam.IRole;

  /**
   * The KMS key the enclave may use, bound to its measurements. Pass one to share it
   * between instances or to set its alias and removal policy. Either way the instance role
   * may use it only from the enclave, through an IAM policy of its own
   * (`enclaveKeyStatement()`); the key policy names the role too only when its account is
   * not known at synth time to be the key's.
   *
   * @default - a new AttestationBoundKey bound to the enclave image's PCR0, PCR1 and PCR2
   * (and PCR8 for a signed image), plus PCR3 when `role` has a concrete ARN
   */
  readonly key?: AttestationBoundKey;

  /**
   * CloudWatch: `true` creates an `EnclaveGpuObservability` (dashboard, alarms,
   * kernel-attestation and boot log groups) for this instance or fleet, `false` creates none
   * and skips the CloudWatch agent, or pass one you built (for example to share it between
   * stacks): it must watch this host's enclave image, and no other instance.
   *
   * @default true
   */
  readonly observability?: boolean | EnclaveGpuObservability;

  /**
   * The security group.
   *
   * @default - a new group with no inbound rules and outbound HTTPS (TCP 443) only
   */
  readonly securityGroup?: ec2.ISecurityGroup;

  /**
   * Run the enclave with `--debug-mode`. Its console becomes readable from the parent and
   * its attestation documents carry all-zero PCRs, so keys bound to the real measurements
   * are out of its reach. For development only.
   *
   * @default false
   */
  readonly debugMode?: boolean;

  /**
   * Size of the encrypted gp3 root volume. The default AMI's snapshot is 75 GiB.
   *
   * @default Size.gibibytes(100)
   */
  readonly rootVolumeSize?: Size;

  /**
   * The vsock context id (CID) of the enclave.
   *
   * @default 16
   */
  readonly enclaveCid?: number;

  /**
   * The vsock port on the parent instance that forwards to the region's KMS endpoint.
   *
   * @default 8000
   */
  readonly kmsProxyVsockPort?: number;

  /**
   * The gpu-runtime installed on the instances: SGS (the Secure GPU Scheduler, which admits
   * the enclave over vsock) and the execution context (which runs its kernels on the GPU).
   * The instances download it from its S3 asset at boot, check its SHA-256 and install it
   * under `/opt/enclave-gpu/runtime/<sha256>`; an `EnclaveGpuImage` AMI that baked the same
   * runtime makes that a no-op.
   *
   * @default GpuRuntime.fromBundledAsset() - the runtime built into this package
   */
  readonly gpuRuntime?: GpuRuntime;

  /**
   * The vsock port SGS listens on, on every CID of the parent (`vsock:4294967295:<port>`);
   * the enclave connects to `vsock:3:<port>`. Must differ from `kmsProxyVsockPort`.
   *
   * @default 7410
   */
  readonly sgsVsockPort?: number;

  /**
   * The loopback TCP port of SGS's health endpoint (`GET /health` on 127.0.0.1), which the
   * instance's health check queries every 30 s.
   *
   * @default 7411
   */
  readonly sgsHealthPort?: number;

  /**
   * Whether the execution context loads and runs `onnx.run`'s models in a worker thread
   * (`egpu context --onnx-worker`). Turn it on when several enclaves share an instance, or
   * when a model runs long: in the context's main thread an inference (and the building of a
   * model) holds up every other session's uploads, kernels and handshakes until it ends. The
   * worker costs each inference some latency and throughput instead; the README's
   * "Runtime" section gives both as measured (`npm run bench`, `onnxPlacement`).
   *
   * @default false - in the main thread: a lone enclave's inference is answered soonest
   */
  readonly onnxWorkerThread?: boolean;

  /**
   * Runs `onnx.run`'s models in a child process of the execution context whose data memory
   * is limited to this size (`egpu context --onnx-memory-limit`; RLIMIT_DATA, at least
   * 1032 MiB, most of it for Node.js 24 itself): a model that needs more (intermediate tensors of gigabytes, say) fails with
   * KERNEL_FAILED instead of pushing the context, which holds every session's keys and
   * buffers, toward the out-of-memory killer. Like `onnxWorkerThread` (which it takes the
   * place of when both are set), an inference no longer holds up other sessions; each one's
   * inputs and outputs are copied over a pipe once more. It bounds host memory only, not GPU
   * memory under the CUDA provider (not yet run under the limit). Keep it below the memory
   * the instance has free beside the enclave.
   *
   * @default - no limit: the models share the execution context's memory
   */
  readonly onnxMemoryLimit?: Size;

  /**
   * How long CloudFormation waits for a new instance to report that its enclave runs and
   * SGS answers, from launch (driver, packages, runtime install and enclave start included).
   * A boot that fails, or does not finish in time, fails the deployment, which rolls back:
   * an `EnclaveGpuInstance` is created with this creation policy, and an `EnclaveGpuFleet`
   * waits for every instance it creates or replaces. The boot itself waits for readiness
   * until an eighth of this before it (at least 3 and at most 10 minutes, never more than
   * half), then signals FAILURE with its reason, which reaches CloudFormation before its
   * own timeout: with the default, a boot has 17 minutes to get ready. 1 minute to 12 hours for an
   * instance, at most 1 hour for a fleet (a rolling update's longest PauseTime). The
   * instance reaches CloudFormation's endpoint over HTTPS: without a NAT gateway, give its
   * subnets a `cloudformation` interface endpoint. Unused with `waitForReady: false`.
   *
   * @default Duration.minutes(20)
   */
  readonly bootTimeout?: Duration;

  /**
   * Whether CloudFormation waits for each new instance to report that its enclave runs, SGS
   * answers and the execution context is up (see `bootTimeout`). Turn it off only for an
   * enclave image that cannot run, such as a placeholder in a test deployment: a deployment
   * then succeeds whatever the boot does, and a fleet's rolling update replaces instances
   * without waiting for them to be ready.
   *
   * @default true
   */
  readonly waitForReady?: boolean;
}
