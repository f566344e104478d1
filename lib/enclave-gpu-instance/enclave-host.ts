import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3_assets from 'aws-cdk-lib/aws-s3-assets';
import { Annotations, Aws, CfnResource, Duration, Size, SizeRoundingBehavior, Stack, Token } from 'aws-cdk-lib';
import { Construct } from 'constructs';
import { httpsOnlySecurityGroup } from './https-only-security-group';
import { AttestationBoundKey } from '../attestation-kms/attestation-bound-key';
import { EifMeasurements } from '../attestation-kms/eif-measurements';
import { Pcrs } from '../attestation-kms/pcrs';
import { EnclaveGpuObservability } from '../observability/enclave-gpu-observability';
import { enclaveImageDimension } from '../observability/metric-catalogue';
import { EnclaveResourceSettings } from './boot/enclave-resource-settings';
import { renderEnclaveBootScript } from './boot/enclave-boot-script';
import { HealthReporting } from './boot/health-monitor';
import { ContextPcrs, MIN_ONNX_MEMORY_LIMIT_BYTES } from './boot/runtime-services';
import { EnclaveHostProps } from './enclave-host-props';
import { EnclaveImageConfig } from './enclave-image';
import { GpuRuntimeConfig, defaultGpuRuntime, stageFile } from './gpu-runtime';
import { renderRuntimeInstaller } from './boot/runtime-install';
import { resolveEnclaveResources } from './enclave-sizing';
import { checkRoleAccount, createParentRole, EnclaveParentPolicy, enclaveKmsPolicy, isOfAccount } from './instance-role';
import { checkInstanceType } from './instance-type-check';
import { propError, requireWholeNumber } from './validation';

/** The instance type used when none is given. */
export const DEFAULT_INSTANCE_TYPE = 'g5.2xlarge';

/** The public SSM parameter of the default AMI. */
export const DEFAULT_MACHINE_IMAGE_PARAMETER = '/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-amazon-linux-2023/latest/ami-id';

/** How long CloudFormation waits for an instance to signal that it is ready, when not given. */
export const DEFAULT_BOOT_TIMEOUT = Duration.minutes(20);

/** The most user data EC2 accepts, before base64 encoding. */
const USER_DATA_LIMIT_BYTES = 16 * 1024;

/** Snapshot size of the default AMI: a smaller root volume cannot launch. */
const DEFAULT_AMI_SNAPSHOT_GIB = 75;

/**
 * The part of an enclave parent that an instance and a fleet share: validated settings, the
 * role and its policy, the attestation-bound key, the security group, the root volume and
 * the boot script. One builder, so the same props always render the same bytes.
 *
 * Internal: the constructs expose what users need of it.
 */
export class EnclaveHost {
  readonly instanceType: ec2.InstanceType;
  readonly machineImage: ec2.IMachineImage;
  readonly resources: EnclaveResourceSettings;
  readonly image: EnclaveImageConfig;
  readonly role: iam.IRole;
  readonly parentPolicy: EnclaveParentPolicy;
  readonly key: AttestationBoundKey;
  readonly securityGroup: ec2.ISecurityGroup;
  readonly rootVolume: ec2.BlockDevice;
  readonly userData = ec2.UserData.forLinux();
  readonly runtime: GpuRuntimeConfig;
  /** The runtime's install script, a file asset (user data is limited to 16 KB). */
  private readonly runtimeInstaller: { readonly asset: s3_assets.Asset; readonly sha256: string };
  /** How long CloudFormation waits for an instance's ready signal. */
  readonly bootTimeout: Duration;
  /** Whether CloudFormation waits for each new instance's ready signal. */
  readonly waitForReady: boolean;
  /** The image's PCRs, known at synth time: the key, SGS, the context and the metrics all need them. */
  private readonly pcrs: ContextPcrs;
  private readonly enclaveCid: number;
  private readonly kmsProxyVsockPort: number;
  private readonly sgsVsockPort: number;
  private readonly sgsHealthPort: number;
  private readonly onnxMemoryLimitBytes?: number;

  constructor(private readonly scope: Construct, private readonly props: EnclaveHostProps) {
    this.instanceType = props.instanceType ?? new ec2.InstanceType(DEFAULT_INSTANCE_TYPE);
    const typeInfo = checkInstanceType(scope, this.instanceType, props.allowUnlistedInstanceType ?? false);
    const rootVolumeSize = props.rootVolumeSize ?? Size.gibibytes(100);
    if (!props.machineImage && rootVolumeSize.toGibibytes() < DEFAULT_AMI_SNAPSHOT_GIB) {
      throw propError(scope, 'rootVolumeSize', `${rootVolumeSize.toGibibytes()} GiB is smaller than the default AMI's ${DEFAULT_AMI_SNAPSHOT_GIB} GiB snapshot`, `Use at least Size.gibibytes(${DEFAULT_AMI_SNAPSHOT_GIB})`);
    }
    if (!props.machineImage && typeInfo && typeInfo.architecture !== 'x86_64') {
      throw propError(scope, 'instanceType', `'${this.instanceType}' is ${typeInfo.architecture} but the default AMI is x86_64`, 'Pass a machineImage for that architecture');
    }
    this.machineImage = props.machineImage ?? ec2.MachineImage.fromSsmParameter(DEFAULT_MACHINE_IMAGE_PARAMETER, { os: ec2.OperatingSystemType.LINUX });
    this.enclaveCid = requireWholeNumber(scope, 'enclaveCid', props.enclaveCid ?? 16, 4, 0xffffffff - 1);
    this.kmsProxyVsockPort = requireWholeNumber(scope, 'kmsProxyVsockPort', props.kmsProxyVsockPort ?? 8000, 1, 0xffffffff - 1);
    this.sgsVsockPort = requireWholeNumber(scope, 'sgsVsockPort', props.sgsVsockPort ?? 7410, 1, 0xffffffff - 1);
    if (this.sgsVsockPort === this.kmsProxyVsockPort) {
      throw propError(scope, 'sgsVsockPort', `${this.sgsVsockPort} is also the kmsProxyVsockPort: both listen on the parent's vsock`, 'Give SGS another port');
    }
    this.sgsHealthPort = requireWholeNumber(scope, 'sgsHealthPort', props.sgsHealthPort ?? 7411, 1, 65535);
    this.onnxMemoryLimitBytes = checkOnnxMemoryLimit(scope, props.onnxMemoryLimit);
    this.bootTimeout = props.bootTimeout ?? DEFAULT_BOOT_TIMEOUT;
    this.waitForReady = props.waitForReady ?? true;
    if (this.bootTimeout.isUnresolved()) {
      throw propError(scope, 'bootTimeout', 'is a token', 'It is rendered into the boot script at synth time: pass a concrete Duration');
    }
    if (this.bootTimeout.toSeconds() < 60 || this.bootTimeout.toSeconds() > 12 * 3600) {
      throw propError(scope, 'bootTimeout', `${this.bootTimeout.toHumanString()} is outside 1 minute to 12 hours (the limit of a creation policy)`, 'Pass a Duration in that range, for example Duration.minutes(20)');
    }

    this.image = props.enclaveImage.bind(scope);
    this.pcrs = knownPcrs(scope, this.image);
    this.resources = resolveEnclaveResources(scope, props.enclave, typeInfo, this.image.sizeBytes);

    if (props.role !== undefined) checkRoleAccount(scope, props.role);
    this.role = props.role ?? createParentRole(scope, 'Role');
    this.runtime = (props.gpuRuntime ?? defaultGpuRuntime(scope)).bind(scope);
    if (this.onnxMemoryLimitBytes !== undefined && this.runtime.onnxCudaProvider) {
      Annotations.of(scope).addWarningV2('cdk-enclave-gpu:onnxMemoryLimitWithCuda',
        'onnxMemoryLimit bounds host memory only, and the CUDA provider has not yet run under it: the context checks that CUDA loads in its own process, so if it cannot start in the limited worker, every onnx.run fails with KERNEL_FAILED. Try it on your instance type before relying on it.');
    }
    const installer = stageFile('cdk-enclave-gpu-installer', 'sh', Buffer.from(renderRuntimeInstaller({ sha256: this.runtime.sha256, cudaProvider: this.runtime.onnxCudaProvider })));
    this.runtimeInstaller = { asset: new s3_assets.Asset(scope, 'GpuRuntimeInstaller', { path: installer.path }), sha256: installer.sha256 };
    this.parentPolicy = new EnclaveParentPolicy(scope, 'Policy', this.role, this.image, this.runtime, this.runtimeInstaller.asset);
    this.key = props.key ?? this.createKey(props.role);
    // The role's KMS permissions, under the parent policy: what waits for it waits for them too.
    enclaveKmsPolicy(this.parentPolicy, this.role, this.key);
    if (!isOfAccount(this.key, this.role)) {
      // Not known to be of the key's account: if it is of another, only the key policy lets it use the key.
      this.key.grantEnclaveDecrypt(this.role);
      this.key.grantEnclaveGenerateDataKey(this.role);
    }
    this.securityGroup = props.securityGroup ?? httpsOnlySecurityGroup(scope, 'SecurityGroup', props.vpc, 'Enclave GPU parent instance: no inbound, outbound HTTPS only', 'Systems Manager, S3, KMS, CloudWatch, CloudFormation and the package repositories');
    this.rootVolume = {
      deviceName: '/dev/xvda',
      volume: ec2.BlockDeviceVolume.ebs(rootVolumeSize.toGibibytes(), { encrypted: true, volumeType: ec2.EbsDeviceVolumeType.GP3, deleteOnTermination: true }),
    };
  }

  /** The subnets: private with egress unless given. */
  get vpcSubnets(): ec2.SubnetSelection {
    return this.props.vpcSubnets ?? { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS };
  }

  /**
   * Creates (or takes) the observability construct, writes the boot script and lets the
   * role signal readiness. Called once the instance or group exists: a single instance's
   * dashboard needs its id, and both need the resource that waits for the ready signal.
   *
   * @param instanceId the instance, for per-instance metrics; undefined for a fleet
   * @param waiting the instance or group whose creation or update waits for each instance's signal (with waitForReady)
   * @param healthReporting who hears that an instance is unhealthy
   */
  finish(instanceId: string | undefined, waiting: CfnResource, healthReporting: HealthReporting): EnclaveGpuObservability | undefined {
    const observability = this.resolveObservability(this.props.observability ?? true, instanceId);
    this.parentPolicy.policy.addStatements(...observability?.agentPolicyStatements() ?? []);
    const stack = Stack.of(this.scope);
    if (this.waitForReady) {
      // In the policy the instance or group waits for. (A group with signals also gets this statement
      // from aws-cdk-lib, in the role's default policy, which nothing orders before the launch.)
      this.parentPolicy.policy.addStatements(new iam.PolicyStatement({
        sid: 'SignalReadiness',
        actions: ['cloudformation:SignalResource'],
        resources: [stack.stackId],
      }));
    }
    this.userData.addCommands(...renderEnclaveBootScript({
      enclave: this.resources,
      enclaveName: 'enclave-gpu',
      enclaveCid: this.enclaveCid,
      debugMode: this.props.debugMode ?? false,
      eif: { s3Url: this.image.bucket.s3UrlForObject(this.image.objectKey), sha256: this.image.sha256, region: stack.region },
      kmsEndpoint: { address: `kms.${Aws.REGION}.${Aws.URL_SUFFIX}`, port: 443 },
      kmsProxyVsockPort: this.kmsProxyVsockPort,
      region: Aws.REGION,
      healthReporting,
      readiness: this.waitForReady ? {
        signal: { stackName: stack.stackName, logicalId: waiting.logicalId },
        deadlineSeconds: readinessDeadlineSeconds(this.bootTimeout.toSeconds()),
      } : undefined,
      cloudWatchAgentConfig: observability?.cloudWatchAgentConfig(),
      runtime: {
        archive: { s3Url: this.runtime.bucket.s3UrlForObject(this.runtime.objectKey), region: stack.region },
        installer: { s3Url: this.runtimeInstaller.asset.s3ObjectUrl, sha256: this.runtimeInstaller.sha256, region: stack.region },
      },
      sgs: {
        pcrs: this.pcrs,
        enclaveVsockPort: this.sgsVsockPort,
        healthPort: this.sgsHealthPort,
        publishMetrics: observability !== undefined,
        onnxWorkerThread: this.props.onnxWorkerThread ?? false,
        onnxMemoryLimitBytes: this.onnxMemoryLimitBytes,
      },
    }));
    this.scope.node.addValidation({ validate: () => this.validateUserDataSize() });
    return observability;
  }

  /** EC2 refuses user data above 16 KB (before base64); tokens count at their placeholder length, close to their value's. */
  private validateUserDataSize(): string[] {
    const bytes = Buffer.byteLength(this.userData.render());
    return bytes > USER_DATA_LIMIT_BYTES
      ? [`the boot script is about ${bytes} bytes, above the ${USER_DATA_LIMIT_BYTES} bytes of user data EC2 accepts. Shorten what you added to the user data.`]
      : [];
  }

  private resolveObservability(option: boolean | EnclaveGpuObservability, instanceId: string | undefined): EnclaveGpuObservability | undefined {
    if (typeof option !== 'boolean') {
      return this.checkObservability(option, instanceId);
    }
    if (!option) {
      return undefined;
    }
    return new EnclaveGpuObservability(this.scope, 'Observability', { enclaveImage: enclaveImageDimension(this.pcrs.pcr0), instanceId });
  }

  /**
   * One built elsewhere must watch what this host publishes: the runtime reports under this
   * image's dimension (and the instance's), so alarms on another would never fire.
   */
  private checkObservability(observability: EnclaveGpuObservability, instanceId: string | undefined): EnclaveGpuObservability {
    const published = enclaveImageDimension(this.pcrs.pcr0);
    if (!Token.isUnresolved(observability.enclaveImage) && observability.enclaveImage !== published) {
      throw new Error(
        `${this.scope.node.path}: observability watches enclave image '${observability.enclaveImage}', but this enclave image's metrics are published as '${published}': `
        + 'its alarms would never fire. Build it with enclaveImage: EnclaveGpuMetrics.enclaveImageDimension(<the image\'s PCR0>).',
      );
    }
    if (observability.instanceId !== undefined && observability.instanceId !== instanceId) {
      const why = instanceId === undefined ? 'a fleet\'s instances come and go' : 'this instance has an id of its own only once deployed';
      throw new Error(
        `${this.scope.node.path}: observability watches one other instance (instanceId ${observability.instanceId}), but ${why}: `
        + 'build it without instanceId, so that it covers every instance running the image.',
      );
    }
    return observability;
  }

  /** A key bound to the image's measurements, and to the role's when its ARN is known at synth. */
  private createKey(role: iam.IRole | undefined): AttestationBoundKey {
    const imagePcrs: Pcrs = this.image.pcrs!; // checked by knownPcrs
    const roleArn = role?.roleArn;
    const pcr3 = roleArn && !Token.isUnresolved(roleArn) ? EifMeasurements.pcr3ForRole(roleArn) : undefined;
    return new AttestationBoundKey(this.scope, 'Key', { pcrs: { ...imagePcrs, ...(pcr3 ? { pcr3 } : {}) } });
  }
}

/** The image's PCR0-2 (and PCR8 if signed), which must be known at synth time. */
function knownPcrs(scope: Construct, image: EnclaveImageConfig): ContextPcrs {
  const pcrs = image.pcrs;
  const known = (value: string | undefined): value is string => value !== undefined && !Token.isUnresolved(value);
  if (!pcrs || !known(pcrs.pcr0) || !known(pcrs.pcr1) || !known(pcrs.pcr2)) {
    throw propError(scope, 'enclaveImage', 'has no known PCR0, PCR1 and PCR2, which the key policy, SGS, the execution context and the metrics are bound to', 'Use EnclaveImage.fromEifFile(), which measures the file');
  }
  return { pcr0: pcrs.pcr0, pcr1: pcrs.pcr1, pcr2: pcrs.pcr2, ...(known(pcrs.pcr8) ? { pcr8: pcrs.pcr8 } : {}) };
}

/**
 * When the boot script gives up waiting for readiness and signals FAILURE with its reason:
 * early enough that the signal reaches CloudFormation before its own timeout, which counts
 * from the instance's creation while the script's clock starts only after the instance has
 * booted and cloud-init has run (often more than a minute on a GPU instance). An eighth of
 * `bootTimeout` before it, at least 3 minutes and at most 10, and never more than half.
 */
export function readinessDeadlineSeconds(bootTimeoutSeconds: number): number {
  const margin = Math.min(Math.max(180, bootTimeoutSeconds / 8), 600, bootTimeoutSeconds / 2);
  return Math.floor(bootTimeoutSeconds - margin);
}

/** `onnxMemoryLimit` in bytes, checked: at least what Node.js and onnxruntime need. */
function checkOnnxMemoryLimit(scope: Construct, limit: Size | undefined): number | undefined {
  if (limit === undefined) return undefined;
  const bytes = limit.toBytes();
  if (!Number.isSafeInteger(bytes)) {
    throw propError(scope, 'onnxMemoryLimit', 'is beyond what a byte count can hold exactly', 'Pass a size the instance has, for example Size.gibibytes(8)');
  }
  if (bytes < MIN_ONNX_MEMORY_LIMIT_BYTES) {
    throw propError(scope, 'onnxMemoryLimit', `${limit.toMebibytes({ rounding: SizeRoundingBehavior.NONE })} MiB is below the ${MIN_ONNX_MEMORY_LIMIT_BYTES / 1024 / 1024} MiB the execution context's worker process needs before any model`,
      `Pass at least Size.mebibytes(${MIN_ONNX_MEMORY_LIMIT_BYTES / 1024 / 1024}), and room for your largest model and its tensors, for example Size.gibibytes(8)`);
  }
  return bytes;
}
