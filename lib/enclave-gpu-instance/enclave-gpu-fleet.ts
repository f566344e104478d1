import * as autoscaling from 'aws-cdk-lib/aws-autoscaling';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as sns from 'aws-cdk-lib/aws-sns';
import { Annotations, CfnResource, Duration, Tags, Validations } from 'aws-cdk-lib';
import { Construct } from 'constructs';
import { AttestationBoundKey } from '../attestation-kms/attestation-bound-key';
import { EnclaveGpuObservability } from '../observability/enclave-gpu-observability';
import { EnclaveHost } from './enclave-host';
import { EnclaveHostProps } from './enclave-host-props';
import { FleetScaling } from './fleet-scaling';
import { propError, requireWholeNumber } from './validation';

/**
 * Properties of an {@link EnclaveGpuFleet}.
 */
export interface EnclaveGpuFleetProps extends EnclaveHostProps {
  /**
   * The fewest instances. 0 only with `scaling: FleetScaling.none()`: the scaling metrics
   * come from running instances, so a fleet at 0 would never scale out.
   *
   * @default 1
   */
  readonly minCapacity?: number;

  /**
   * The most instances.
   *
   * @default 4
   */
  readonly maxCapacity?: number;

  /**
   * How the group scales.
   *
   * @default FleetScaling.queueDepth(4)
   */
  readonly scaling?: FleetScaling;

  /**
   * Where the group sends launch, termination and failure notifications.
   *
   * @default - none (the events are still in the group's activity history and CloudTrail)
   */
  readonly notificationsTopic?: sns.ITopic;

  /**
   * How long a new instance may take to boot (driver, nitro-cli, enclave) before its health
   * counts.
   *
   * @default Duration.minutes(10)
   */
  readonly healthCheckGracePeriod?: Duration;
}

/**
 * An EC2 Auto Scaling group of GPU instances with Nitro Enclaves enabled: the way to
 * outgrow one machine. Its launch template carries the same boot configuration as
 * `EnclaveGpuInstance` (one builder renders both), instances are replaced one at a time
 * when the image or configuration changes (each new one signals CloudFormation that its
 * enclave runs before the update goes on, unless `waitForReady` is false), an instance whose enclave stops reports itself
 * unhealthy, and the group scales on the `EnclaveGPU` metrics of its enclave image.
 *
 * @example
 * declare const vpc: ec2.IVpc;
 * new EnclaveGpuFleet(this, 'Inference', {
 *   vpc,
 *   enclaveImage: EnclaveImage.fromEifFile('enclave/inference.eif'),
 *   minCapacity: 2,
 *   maxCapacity: 8,
 *   scaling: FleetScaling.queueDepth(4),
 * });
 */
export class EnclaveGpuFleet extends Construct implements ec2.IConnectable, iam.IGrantable {
  /** The Auto Scaling group. */
  public readonly autoScalingGroup: autoscaling.AutoScalingGroup;

  /** The launch template of the group's instances. */
  public readonly launchTemplate: ec2.LaunchTemplate;

  /** The role the instances run as. */
  public readonly role: iam.IRole;

  /** The principal to grant permissions to: the instance role. */
  public readonly grantPrincipal: iam.IPrincipal;

  /** The instances' network connections (security groups). */
  public readonly connections: ec2.Connections;

  /** The KMS key that releases key material only to this enclave image. */
  public readonly key: AttestationBoundKey;

  /** The fleet's dashboard, alarms and kernel-attestation log (metrics per enclave image), unless turned off. */
  public readonly observability?: EnclaveGpuObservability;

  constructor(scope: Construct, id: string, props: EnclaveGpuFleetProps) {
    super(scope, id);
    const minCapacity = requireWholeNumber(this, 'minCapacity', props.minCapacity ?? 1, 0, 1000);
    const maxCapacity = requireWholeNumber(this, 'maxCapacity', props.maxCapacity ?? 4, 1, 1000);
    if (maxCapacity < minCapacity) {
      throw propError(this, 'maxCapacity', `${maxCapacity} is below minCapacity ${minCapacity}`, 'Raise maxCapacity or lower minCapacity');
    }
    const host = new EnclaveHost(this, props);
    if (host.waitForReady && host.bootTimeout.toSeconds() > MAX_PAUSE_SECONDS) {
      throw propError(this, 'bootTimeout', `${host.bootTimeout.toHumanString()} is above 1 hour, the longest a rolling update waits for an instance (its PauseTime)`, 'Pass at most Duration.hours(1)');
    }
    if (minCapacity === maxCapacity) {
      Annotations.of(this).addWarningV2('cdk-enclave-gpu:fleetUpdateWithoutOverlap',
        `maxCapacity equals minCapacity (${minCapacity}): a rolling update takes an instance out of service before its replacement is ready. Raise maxCapacity above minCapacity to keep ${minCapacity} in service.`);
    }
    this.role = host.role;
    this.grantPrincipal = host.role;
    this.key = host.key;

    this.launchTemplate = new ec2.LaunchTemplate(this, 'LaunchTemplate', {
      instanceType: host.instanceType,
      machineImage: host.machineImage,
      userData: host.userData,
      role: host.role,
      securityGroup: host.securityGroup,
      nitroEnclaveEnabled: true,
      httpTokens: ec2.LaunchTemplateHttpTokens.REQUIRED,
      requireImdsv2: true,
      detailedMonitoring: true,
      blockDevices: [host.rootVolume],
    });
    this.autoScalingGroup = new autoscaling.AutoScalingGroup(this, 'Group', {
      vpc: props.vpc,
      vpcSubnets: host.vpcSubnets,
      launchTemplate: this.launchTemplate,
      minCapacity,
      maxCapacity,
      healthChecks: autoscaling.HealthChecks.ec2({ gracePeriod: props.healthCheckGracePeriod ?? Duration.minutes(10) }),
      // A new instance counts toward the scaling metrics only once it could be serving: a GPU
      // parent boots for many minutes, during which it publishes nothing and target tracking
      // would otherwise keep adding instances. bootTimeout, at most the hour EC2 Auto Scaling allows.
      defaultInstanceWarmup: Duration.seconds(Math.min(host.bootTimeout.toSeconds(), MAX_PAUSE_SECONDS)),
      // Creation waits for minCapacity ready signals (none when it is 0: no creation policy then).
      signals: host.waitForReady && minCapacity > 0 ? autoscaling.Signals.waitForMinCapacity({ timeout: host.bootTimeout }) : undefined,
      // A new launch template version (new image, new configuration) replaces instances one by one, each
      // new one ready (its signal) before an old one goes, as long as maxCapacity leaves room for it.
      updatePolicy: autoscaling.UpdatePolicy.rollingUpdate({
        maxBatchSize: 1,
        minInstancesInService: Math.min(minCapacity, maxCapacity - 1),
        waitOnResourceSignals: host.waitForReady,
        pauseTime: host.waitForReady ? host.bootTimeout : undefined,
      }),
      notifications: props.notificationsTopic ? [{ topic: props.notificationsTopic }] : undefined,
    });
    if (!props.notificationsTopic) {
      Validations.of(this.autoScalingGroup).acknowledge({
        id: 'AwsSolutions-AS3',
        reason: 'Scaling events are in the group activity history and CloudTrail, and an instance whose enclave or runtime fails its health check is reported unhealthy and replaced; pass notificationsTopic to receive every launch and termination.',
      });
    }
    this.connections = this.autoScalingGroup.connections;
    // Boot needs the parent policy from its first line.
    this.autoScalingGroup.node.addDependency(host.parentPolicy);
    this.grantReportHealth();

    this.observability = host.finish(undefined, this.autoScalingGroup.node.defaultChild as CfnResource, 'auto-scaling');
    const policy = (props.scaling ?? FleetScaling.queueDepth(4))._policy(this, this.observability);
    if (policy && minCapacity === 0) {
      throw propError(this, 'minCapacity', `0 with scaling on ${policy.name}: only running instances publish it, so a fleet of none would never scale out`,
        'Keep minCapacity at 1 or more, or pass scaling: FleetScaling.none() and set the group\'s desired capacity yourself');
    }
    if (policy?.name === 'GPUUtilization' && !host.runtime.onnxCudaProvider) {
      Annotations.of(this).addWarningV2('cdk-enclave-gpu:gpuUtilizationWithoutCuda',
        'scaling tracks GPUUtilization, but the runtime has no CUDA provider (onnxCudaProviderSha512), so onnx.run runs on the CPU and GPUUtilization stays 0: the fleet would not scale out. Pin the CUDA provider, or scale on FleetScaling.queueDepth().');
    }
    if (policy) {
      this.autoScalingGroup.scaleToTrackMetric(`ScaleOn${policy.name}`, { metric: policy.metric, targetValue: policy.target });
    }
    Tags.of(this).add('EnclaveGPU', 'true');
  }

  /**
   * Lets the instances' health check mark instances unhealthy in this group and no other:
   * the group carries a tag unique to this construct, and the statement requires it.
   * (Scoping by ARN would need a wildcard for the UUID in every group ARN.)
   */
  private grantReportHealth(): void {
    const tagValue = this.node.addr;
    Tags.of(this.autoScalingGroup).add(FLEET_TAG_KEY, tagValue);
    const policy = new iam.Policy(this, 'ReportHealth', {
      roles: [this.role],
      statements: [new iam.PolicyStatement({
        sid: 'ReportHealthInOwnGroup',
        actions: ['autoscaling:SetInstanceHealth'],
        resources: ['*'],
        conditions: { StringEquals: { [`autoscaling:ResourceTag/${FLEET_TAG_KEY}`]: tagValue } },
      })],
    });
    this.autoScalingGroup.node.addDependency(policy); // an instance whose boot fails at once can report it
    Validations.of(policy).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason: `autoscaling:SetInstanceHealth is limited by the autoscaling:ResourceTag/${FLEET_TAG_KEY} condition to the one group that carries this fleet's unique tag.`,
    });
  }
}

/** The longest PauseTime of a rolling update. */
const MAX_PAUSE_SECONDS = 3600;

/** The tag that identifies a fleet's Auto Scaling group to its own health reports. */
const FLEET_TAG_KEY = 'enclave-gpu:fleet';
