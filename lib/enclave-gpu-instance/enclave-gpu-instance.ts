import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Aws, Size, Stack, Tags, Token, Validations } from 'aws-cdk-lib';
import { Construct } from 'constructs';
import { AttestationBoundKey } from '../attestation-kms/attestation-bound-key';
import { EifMeasurements } from '../attestation-kms/eif-measurements';
import { Pcrs } from '../attestation-kms/pcrs';
import { EnclaveGpuObservability } from '../observability/enclave-gpu-observability';
import { enclaveImageDimension } from '../observability/metric-catalogue';
import { renderEnclaveBootScript } from './boot/enclave-boot-script';
import { EnclaveImage } from './enclave-image';
import { EnclaveResources } from './enclave-resources';
import { resolveEnclaveResources } from './enclave-sizing';
import { createParentRole, EnclaveParentPolicy } from './instance-role';
import { checkInstanceType } from './instance-type-check';
import { propError, requireWholeNumber } from './validation';

/**
 * Properties of an {@link EnclaveGpuInstance}.
 */
export interface EnclaveGpuInstanceProps {
  /**
   * The VPC to launch the instance in.
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
   * to the enclave image object, and `cloudwatch:PutMetricData` in the `EnclaveGPU`
   * namespace only.
   *
   * @default - a new role
   */
  readonly role?: iam.IRole;

  /**
   * The KMS key the enclave may use, bound to its measurements. Pass one to share it
   * between instances or to set its alias and removal policy; the instance role is granted
   * `grantEnclaveDecrypt` and `grantEnclaveGenerateDataKey` on it either way.
   *
   * @default - a new AttestationBoundKey bound to the enclave image's PCR0, PCR1 and PCR2
   * (and PCR8 for a signed image), plus PCR3 when `role` has a concrete ARN
   */
  readonly key?: AttestationBoundKey;

  /**
   * CloudWatch for the instance: `true` creates an `EnclaveGpuObservability` (dashboard,
   * alarms, kernel-attestation log group) for this instance, `false` creates none and skips
   * the CloudWatch agent, or pass one you built (for example to share it between instances).
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
   * Protect the instance from termination through the EC2 API.
   *
   * @default false - the instance holds no state: the enclave image is fetched from S3 at boot
   */
  readonly terminationProtection?: boolean;

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
   * The `Name` tag of the instance.
   *
   * @default - the construct path
   */
  readonly instanceName?: string;
}

/**
 * One EC2 GPU instance with AWS Nitro Enclaves enabled, ready at boot to run an enclave.
 *
 * It renders the enclave's boot configuration from typed props (the allocator's CPU and
 * memory reservation, a vsock-proxy that reaches only the stack region's KMS endpoint, a
 * systemd unit that runs the enclave image) and applies secure defaults: IMDSv2 only, an
 * encrypted root volume, detailed monitoring, Session Manager instead of SSH, a
 * least-privilege role, and the tag `EnclaveGPU=true` on everything it creates.
 *
 * @example
 * declare const vpc: ec2.IVpc;
 * new EnclaveGpuInstance(this, 'Inference', {
 *   vpc,
 *   instanceType: new ec2.InstanceType('g5.2xlarge'),
 *   enclave: { cpuCount: 2, memoryMiB: 8192 },
 *   enclaveImage: EnclaveImage.fromEifFile('enclave/inference.eif'),
 * });
 */
export class EnclaveGpuInstance extends Construct implements ec2.IConnectable, iam.IGrantable {
  /** The instance type used when none is given. */
  public static readonly DEFAULT_INSTANCE_TYPE = 'g5.2xlarge';

  /** The public SSM parameter of the default AMI. */
  public static readonly DEFAULT_MACHINE_IMAGE_PARAMETER =
    '/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-amazon-linux-2023/latest/ami-id';

  /** The tag key put on every resource of this construct, for cost allocation. */
  public static readonly TAG_KEY = 'EnclaveGPU';

  /** The underlying EC2 instance. */
  public readonly instance: ec2.Instance;

  /** The instance id. */
  public readonly instanceId: string;

  /** The role the instance runs as. */
  public readonly role: iam.IRole;

  /** The instance's network connections (security groups). */
  public readonly connections: ec2.Connections;

  /** The principal to grant permissions to: the instance role. */
  public readonly grantPrincipal: iam.IPrincipal;

  /** vCPUs reserved for the enclave. */
  public readonly enclaveCpuCount: number;

  /** Memory reserved for the enclave, in MiB. */
  public readonly enclaveMemoryMiB: number;

  /** The enclave image's PCR measurements, where known. */
  public readonly enclavePcrs?: Pcrs;

  /** The KMS key that releases key material only to this enclave image. */
  public readonly key: AttestationBoundKey;

  /** The instance's dashboard, alarms and kernel-attestation log, unless turned off. */
  public readonly observability?: EnclaveGpuObservability;

  constructor(scope: Construct, id: string, props: EnclaveGpuInstanceProps) {
    super(scope, id);

    const instanceType = props.instanceType ?? new ec2.InstanceType(EnclaveGpuInstance.DEFAULT_INSTANCE_TYPE);
    const typeInfo = checkInstanceType(this, instanceType, props.allowUnlistedInstanceType ?? false);
    const rootVolumeSize = props.rootVolumeSize ?? Size.gibibytes(100);
    if (!props.machineImage && rootVolumeSize.toGibibytes() < 75) {
      throw propError(this, 'rootVolumeSize', `${rootVolumeSize.toGibibytes()} GiB is smaller than the default AMI's 75 GiB snapshot`, 'Use at least Size.gibibytes(75)');
    }
    if (!props.machineImage && typeInfo && typeInfo.architecture !== 'x86_64') {
      throw propError(this, 'instanceType', `'${instanceType}' is ${typeInfo.architecture} but the default AMI is x86_64`, 'Pass a machineImage for that architecture');
    }
    const enclaveCid = requireWholeNumber(this, 'enclaveCid', props.enclaveCid ?? 16, 4, 0xffffffff - 1);
    const kmsProxyVsockPort = requireWholeNumber(this, 'kmsProxyVsockPort', props.kmsProxyVsockPort ?? 8000, 1, 0xffffffff - 1);

    const image = props.enclaveImage.bind(this);
    const resources = resolveEnclaveResources(this, props.enclave, typeInfo, image.sizeBytes);
    this.enclaveCpuCount = resources.cpuCount;
    this.enclaveMemoryMiB = resources.memoryMiB;
    this.enclavePcrs = image.pcrs;

    this.role = props.role ?? createParentRole(this, 'Role');
    this.grantPrincipal = this.role;
    const parentPolicy = new EnclaveParentPolicy(this, 'Policy', this.role, image);
    this.key = props.key ?? this.createKey(image.pcrs, props.role);
    this.key.grantEnclaveDecrypt(this.role);
    this.key.grantEnclaveGenerateDataKey(this.role);

    const securityGroup = props.securityGroup ?? this.createSecurityGroup(props.vpc);

    const userData = ec2.UserData.forLinux();
    this.instance = new ec2.Instance(this, 'Instance', {
      vpc: props.vpc,
      vpcSubnets: props.vpcSubnets ?? { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
      instanceType,
      machineImage: props.machineImage ?? ec2.MachineImage.fromSsmParameter(EnclaveGpuInstance.DEFAULT_MACHINE_IMAGE_PARAMETER, {
        os: ec2.OperatingSystemType.LINUX,
      }),
      role: this.role,
      securityGroup,
      userData,
      userDataCausesReplacement: true,
      enclaveEnabled: true,
      httpTokens: ec2.HttpTokens.REQUIRED,
      detailedMonitoring: true,
      disableApiTermination: props.terminationProtection ?? false,
      instanceName: props.instanceName,
      propagateTagsToVolumeOnCreation: true,
      blockDevices: [{
        deviceName: '/dev/xvda',
        volume: ec2.BlockDeviceVolume.ebs(rootVolumeSize.toGibibytes(), {
          encrypted: true,
          volumeType: ec2.EbsDeviceVolumeType.GP3,
          deleteOnTermination: true,
        }),
      }],
    });
    this.instanceId = this.instance.instanceId;
    this.connections = this.instance.connections;

    // The boot script needs these permissions from its first line: attach them before the instance starts.
    this.instance.node.addDependency(parentPolicy);
    this.observability = this.resolveObservability(props.observability ?? true, image.pcrs);
    parentPolicy.policy.addStatements(...this.observability?.agentPolicyStatements() ?? []);
    // Rendered after the instance exists: the dashboard and alarms need its id, the boot script the log group.
    userData.addCommands(...renderEnclaveBootScript({
      enclave: resources,
      enclaveName: 'enclave-gpu',
      enclaveCid,
      debugMode: props.debugMode ?? false,
      eif: { s3Url: image.bucket.s3UrlForObject(image.objectKey), sha256: image.sha256, region: Stack.of(this).region },
      kmsEndpoint: { address: `kms.${Aws.REGION}.${Aws.URL_SUFFIX}`, port: 443 },
      kmsProxyVsockPort,
      cloudWatchAgentConfig: this.observability?.cloudWatchAgentConfig(),
    }));

    if (!props.terminationProtection) {
      Validations.of(this.instance).acknowledge({
        id: 'AwsSolutions-EC29',
        reason: 'The instance holds no state (the enclave image and configuration are rebuilt at every boot); set terminationProtection: true for hosts that must not be terminated by mistake.',
      });
    }
    Tags.of(this).add(EnclaveGpuInstance.TAG_KEY, 'true');
    this.node.addValidation({ validate: () => this.validateNoHibernation() });
  }

  private resolveObservability(option: boolean | EnclaveGpuObservability, pcrs: Pcrs | undefined): EnclaveGpuObservability | undefined {
    if (typeof option !== 'boolean') {
      return option;
    }
    if (!option) {
      return undefined;
    }
    if (!pcrs?.pcr0 || Token.isUnresolved(pcrs.pcr0)) {
      throw propError(this, 'observability', "needs the enclave image's PCR0 for the EnclaveImage dimension", 'Use an enclaveImage with a known PCR0, pass your own EnclaveGpuObservability, or set observability: false');
    }
    return new EnclaveGpuObservability(this, 'Observability', {
      enclaveImage: enclaveImageDimension(pcrs.pcr0),
      instanceId: this.instance.instanceId,
    });
  }

  /** A key bound to the image's measurements, and to the role's when its ARN is known at synth. */
  private createKey(imagePcrs: Pcrs | undefined, role: iam.IRole | undefined): AttestationBoundKey {
    if (!imagePcrs) {
      throw propError(this, 'key', 'is required when the enclave image has no known PCRs', 'Pass an AttestationBoundKey, or an enclaveImage with PCRs');
    }
    const roleArn = role?.roleArn;
    const pcr3 = roleArn && !Token.isUnresolved(roleArn) ? EifMeasurements.pcr3ForRole(roleArn) : undefined;
    return new AttestationBoundKey(this, 'Key', { pcrs: { ...imagePcrs, ...(pcr3 ? { pcr3 } : {}) } });
  }

  /**
   * Nitro Enclaves and hibernation exclude each other; catches hibernation switched on
   * through the L1 escape hatch after construction.
   */
  private validateNoHibernation(): string[] {
    const cfnInstance = this.instance.node.defaultChild as ec2.CfnInstance;
    const hibernation = cfnInstance.hibernationOptions as ec2.CfnInstance.HibernationOptionsProperty | undefined;
    return hibernation?.configured === true
      ? ['hibernationOptions.configured is true: an instance with Nitro Enclaves enabled cannot hibernate. Remove the hibernation override.']
      : [];
  }

  private createSecurityGroup(vpc: ec2.IVpc): ec2.SecurityGroup {
    const securityGroup = new ec2.SecurityGroup(this, 'SecurityGroup', {
      vpc,
      description: 'Enclave GPU parent instance: no inbound, outbound HTTPS only',
      allowAllOutbound: false,
    });
    securityGroup.addEgressRule(
      ec2.Peer.anyIpv4(),
      ec2.Port.tcp(443),
      'HTTPS to Systems Manager, S3, KMS, CloudWatch and the package repositories',
    );
    return securityGroup;
  }
}
