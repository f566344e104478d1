import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import { CfnResource, Tags, Validations } from 'aws-cdk-lib';
import { Construct } from 'constructs';
import { AttestationBoundKey } from '../attestation-kms/attestation-bound-key';
import { Pcrs } from '../attestation-kms/pcrs';
import { EnclaveGpuObservability } from '../observability/enclave-gpu-observability';
import { DEFAULT_INSTANCE_TYPE, DEFAULT_MACHINE_IMAGE_PARAMETER, EnclaveHost } from './enclave-host';
import { EnclaveHostProps } from './enclave-host-props';

/**
 * Properties of an {@link EnclaveGpuInstance}.
 */
export interface EnclaveGpuInstanceProps extends EnclaveHostProps {
  /**
   * Protect the instance from termination through the EC2 API.
   *
   * @default false - the instance holds no state: the enclave image is fetched from S3 at boot
   */
  readonly terminationProtection?: boolean;

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
 * systemd unit that runs the enclave image, and the gpu-runtime, SGS and the execution
 * context, installed from their asset and configured to admit that image only) and applies
 * secure defaults: IMDSv2 only, an
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
  public static readonly DEFAULT_INSTANCE_TYPE: string = DEFAULT_INSTANCE_TYPE;

  /** The public SSM parameter of the default AMI. */
  public static readonly DEFAULT_MACHINE_IMAGE_PARAMETER: string = DEFAULT_MACHINE_IMAGE_PARAMETER;

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
    const host = new EnclaveHost(this, props);
    this.enclaveCpuCount = host.resources.cpuCount;
    this.enclaveMemoryMiB = host.resources.memoryMiB;
    this.enclavePcrs = host.image.pcrs;
    this.role = host.role;
    this.grantPrincipal = host.role;
    this.key = host.key;

    this.instance = new ec2.Instance(this, 'Instance', {
      vpc: props.vpc,
      vpcSubnets: host.vpcSubnets,
      instanceType: host.instanceType,
      machineImage: host.machineImage,
      role: host.role,
      securityGroup: host.securityGroup,
      userData: host.userData,
      userDataCausesReplacement: true,
      enclaveEnabled: true,
      httpTokens: ec2.HttpTokens.REQUIRED,
      detailedMonitoring: true,
      disableApiTermination: props.terminationProtection ?? false,
      instanceName: props.instanceName,
      propagateTagsToVolumeOnCreation: true,
      blockDevices: [host.rootVolume],
      // CloudFormation waits for the boot script's ready signal (unless waitForReady is false); a replacement (new user data) is ready before the old instance goes.
      resourceSignalTimeout: host.waitForReady ? host.bootTimeout : undefined,
    });
    this.instanceId = this.instance.instanceId;
    this.connections = this.instance.connections;
    // The boot script needs these permissions from its first line: attach them before the instance starts.
    this.instance.node.addDependency(host.parentPolicy);
    this.observability = host.finish(this.instance.instanceId, this.instance.node.defaultChild as CfnResource, 'log');

    if (!props.terminationProtection) {
      Validations.of(this.instance).acknowledge({
        id: 'AwsSolutions-EC29',
        reason: 'The instance holds no state (the enclave image and configuration are rebuilt at every boot); set terminationProtection: true for hosts that must not be terminated by mistake.',
      });
    }
    Tags.of(this).add(EnclaveGpuInstance.TAG_KEY, 'true');
    this.node.addValidation({ validate: () => this.validateNoHibernation() });
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
}
