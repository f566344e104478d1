import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as sns from 'aws-cdk-lib/aws-sns';
import { App, Duration, Stack, Validations } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { describe, expect, it } from 'vitest';
import { EnclaveGpuFleet, EnclaveGpuFleetProps, EnclaveGpuInstance, EnclaveImage, FleetScaling, observability as observability_module } from '../lib';
import { cfnValueAsText } from '../scripts/template-text';
import { expectedPcrs, placeholderSections, writePlaceholderEif } from './helpers/eif';
import { FIXTURE_RUNTIME_DIR, hereDocument, testStack, userDataOf } from './helpers/stack';
import { GPU_RUNTIME_DIRECTORY_CONTEXT } from '../lib/enclave-gpu-instance/gpu-runtime';
import { reportUnhealthyCommands } from '../lib/enclave-gpu-instance/boot/health-monitor';

const eifPath = writePlaceholderEif();
const ENCLAVE_IMAGE = expectedPcrs(placeholderSections()).pcr0.slice(0, 16);

function synth(props: Partial<EnclaveGpuFleetProps> = {}) {
  const { app, stack, vpc } = testStack();
  const fleet = new EnclaveGpuFleet(stack, 'Inference', { vpc, enclaveImage: EnclaveImage.fromEifFile(eifPath), ...props });
  return { app, stack, fleet, template: Template.fromStack(stack) };
}

function launchTemplateUserData(template: Template): string {
  const [lt] = Object.values(template.findResources('AWS::EC2::LaunchTemplate'));
  return cfnValueAsText(lt.Properties.LaunchTemplateData.UserData);
}

describe('EnclaveGpuFleet', () => {
  const { template } = synth();

  it('launches instances with Nitro Enclaves, IMDSv2, detailed monitoring and an encrypted root volume', () => {
    template.hasResourceProperties('AWS::EC2::LaunchTemplate', {
      LaunchTemplateData: Match.objectLike({
        EnclaveOptions: { Enabled: true },
        MetadataOptions: { HttpTokens: 'required' },
        Monitoring: { Enabled: true },
        InstanceType: 'g5.2xlarge',
        BlockDeviceMappings: [{ DeviceName: '/dev/xvda', Ebs: { DeleteOnTermination: true, Encrypted: true, VolumeSize: 100, VolumeType: 'gp3' } }],
        KeyName: Match.absent(),
      }),
    });
  });

  it('uses the launch template in a group of 1 to 4 that replaces instances one at a time', () => {
    template.hasResource('AWS::AutoScaling::AutoScalingGroup', {
      Properties: Match.objectLike({
        MinSize: '1',
        MaxSize: '4',
        HealthCheckType: 'EC2',
        HealthCheckGracePeriod: 600,
        LaunchTemplate: { LaunchTemplateId: { Ref: Match.stringLikeRegexp('^InferenceLaunchTemplate') }, Version: { 'Fn::GetAtt': [Match.stringLikeRegexp('^InferenceLaunchTemplate'), 'LatestVersionNumber'] } },
      }),
      UpdatePolicy: { AutoScalingRollingUpdate: Match.objectLike({ MaxBatchSize: 1, MinInstancesInService: 1 }) },
    });
  });

  it('waits for each new instance to signal ready: at creation, and before a rolling update goes on', () => {
    const [id, group] = Object.entries(template.findResources('AWS::AutoScaling::AutoScalingGroup'))[0];
    expect(group.CreationPolicy).toEqual({ ResourceSignal: { Count: 1, Timeout: 'PT20M' } });
    expect(group.UpdatePolicy.AutoScalingRollingUpdate).toMatchObject({ WaitOnResourceSignals: true, PauseTime: 'PT20M' });
    const userData = launchTemplateUserData(template);
    expect(Buffer.byteLength(userData)).toBeLessThan(11.5 * 1024); // of the 16 KB EC2 accepts (the README says so)
    expect(userData).toContain(`    aws cloudformation signal-resource --stack-name 'TestStack' --logical-resource-id '${id}' --unique-id "$(imds_instance_id)" --status "$1" `);
    expect(userData).toMatch(/\nsignal_cloudformation SUCCESS$/);
    expect(userData).toContain('\n  signal_cloudformation FAILURE\n}\ntrap ');
    const [policy] = Object.entries(template.findResources('AWS::IAM::Policy')).filter(([policyId]) => policyId.startsWith('InferencePolicy')).map(([, p]) => p);
    expect(policy.Properties.PolicyDocument.Statement).toContainEqual({ Sid: 'SignalReadiness', Effect: 'Allow', Action: 'cloudformation:SignalResource', Resource: { Ref: 'AWS::StackId' } });
  });

  it('with waitForReady: false, neither creation nor rolling updates wait for signals', () => {
    const { template: unGated } = synth({ waitForReady: false });
    const [group] = Object.values(unGated.findResources('AWS::AutoScaling::AutoScalingGroup'));
    expect(group.CreationPolicy).toBeUndefined();
    expect(group.UpdatePolicy.AutoScalingRollingUpdate).toMatchObject({ MaxBatchSize: 1, MinInstancesInService: 1 });
    expect(group.UpdatePolicy.AutoScalingRollingUpdate.WaitOnResourceSignals).toBeFalsy();
    expect(group.UpdatePolicy.AutoScalingRollingUpdate.PauseTime).toBeUndefined();
    expect(launchTemplateUserData(unGated)).not.toContain('signal');
    expect(() => synth({ waitForReady: false, bootTimeout: Duration.hours(2) })).not.toThrow(); // no PauseTime to limit
  });

  it('has no creation policy with minCapacity 0 (no instance to signal), but still gates rolling updates', () => {
    const [group] = Object.values(synth({ minCapacity: 0, bootTimeout: Duration.minutes(30), scaling: FleetScaling.none() }).template.findResources('AWS::AutoScaling::AutoScalingGroup'));
    expect(group.CreationPolicy).toBeUndefined();
    expect(group.UpdatePolicy.AutoScalingRollingUpdate).toMatchObject({ WaitOnResourceSignals: true, PauseTime: 'PT30M', MinInstancesInService: 0 });
  });

  it('warns when maxCapacity leaves no room for a replacement to be ready before an old instance goes', () => {
    const warnings = (props: Partial<EnclaveGpuFleetProps>) => Annotations.fromStack(synth(props).stack).findWarning('*', Match.stringLikeRegexp('rolling update takes an instance out of service'));
    expect(warnings({ minCapacity: 2, maxCapacity: 2 })).toHaveLength(1);
    expect(warnings({ minCapacity: 2, maxCapacity: 3 })).toHaveLength(0);
  });

  it('warns when it scales on GPU utilization without the CUDA provider (onnx.run would run on the CPU)', () => {
    const warnings = Annotations.fromStack(synth({ scaling: FleetScaling.gpuUtilization(70) }).stack).findWarning('*', Match.stringLikeRegexp('GPUUtilization stays 0'));
    expect(warnings).toHaveLength(1);
    expect(Annotations.fromStack(synth().stack).findWarning('*', Match.stringLikeRegexp('GPUUtilization stays 0'))).toHaveLength(0);
  });

  it('keeps minCapacity in service during an update when maxCapacity leaves room, one fewer when it does not', () => {
    const inService = (props: Partial<EnclaveGpuFleetProps>) =>
      Object.values(synth(props).template.findResources('AWS::AutoScaling::AutoScalingGroup'))[0].UpdatePolicy.AutoScalingRollingUpdate.MinInstancesInService;
    expect(inService({ minCapacity: 2, maxCapacity: 3 })).toBe(2);
    expect(inService({ minCapacity: 2, maxCapacity: 2 })).toBe(1);
    expect(inService({ minCapacity: 0, maxCapacity: 2, scaling: FleetScaling.none() })).toBe(0);
  });

  it('reports an instance that fails its health check, or its boot, unhealthy to Auto Scaling', () => {
    const userData = launchTemplateUserData(template);
    const script = hereDocument(userData, '/usr/local/libexec/enclave-gpu/health-check');
    expect(script).toContain('if [ "$failures" -ge 3 ]; then\n');
    expect(script).toContain('  aws autoscaling set-instance-health --instance-id "$instance_id" --health-status Unhealthy --region ${AWS::Region} || echo "not reported to Auto Scaling (refused)"\n');
    const trap = userData.slice(0, userData.indexOf('\ntrap '));
    expect(trap).toContain('  aws autoscaling set-instance-health --instance-id "$(imds_instance_id)" --health-status Unhealthy --no-should-respect-grace-period --region ${AWS::Region} || echo "not reported to Auto Scaling (refused)"\n');
  });


  it('starts instances only once their policies are attached, health reporting included', () => {
    const [group] = Object.values(template.findResources('AWS::AutoScaling::AutoScalingGroup'));
    const ids = Object.keys(template.findResources('AWS::IAM::Policy'));
    const policyIds = [/^InferencePolicy[0-9A-F]{8}$/, /^InferencePolicyEnclaveKms/, /^InferenceReportHealth/].map((pattern) => ids.find((id) => pattern.test(id)));
    expect(policyIds.every((id) => id !== undefined)).toBe(true);
    for (const policyId of policyIds) expect(group.DependsOn).toContain(policyId);
  });

  it('scales on the average queue depth of its enclave image by default', () => {
    template.hasResourceProperties('AWS::AutoScaling::ScalingPolicy', {
      PolicyType: 'TargetTrackingScaling',
      TargetTrackingConfiguration: {
        CustomizedMetricSpecification: {
          Namespace: 'EnclaveGPU',
          MetricName: 'QueueDepth',
          Dimensions: [{ Name: 'EnclaveImage', Value: ENCLAVE_IMAGE }],
          Statistic: 'Average',
          Unit: 'Count',
        },
        TargetValue: 4,
      },
    });
  });

  it('lets instances report unhealthy only in their own group, by its unique tag', () => {
    const [group] = Object.values(template.findResources('AWS::AutoScaling::AutoScalingGroup'));
    const tag = group.Properties.Tags.find((t: any) => t.Key === 'enclave-gpu:fleet');
    expect(tag.Value).toMatch(/^c8[0-9a-f]{40}$/);
    template.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: { Statement: [{
        Sid: 'ReportHealthInOwnGroup',
        Effect: 'Allow',
        Action: 'autoscaling:SetInstanceHealth',
        Resource: '*',
        Condition: { StringEquals: { 'autoscaling:ResourceTag/enclave-gpu:fleet': tag.Value } },
      }] },
    });
  });

  it('creates fleet-wide observability, keyed by enclave image only', () => {
    template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'AttestationFailures',
      Dimensions: [{ Name: 'EnclaveImage', Value: ENCLAVE_IMAGE }],
    });
  });

  it('tags the group and its instances EnclaveGPU=true', () => {
    template.hasResourceProperties('AWS::AutoScaling::AutoScalingGroup', {
      Tags: Match.arrayWith([{ Key: 'EnclaveGPU', PropagateAtLaunch: true, Value: 'true' }]),
    });
  });

  it('renders the boot configuration of EnclaveGpuInstance for the same props, but for the resource it signals and who hears of ill health', () => {
    const app = new App({ context: { [GPU_RUNTIME_DIRECTORY_CONTEXT]: FIXTURE_RUNTIME_DIR } });
    const env = { account: '123456789012', region: 'us-east-1' };
    const props = (stack: Stack) => ({
      vpc: ec2.Vpc.fromVpcAttributes(stack, 'Vpc', { vpcId: 'vpc-1', availabilityZones: ['us-east-1a'], privateSubnetIds: ['subnet-1'] }),
      enclaveImage: EnclaveImage.fromEifFile(eifPath),
      instanceType: new ec2.InstanceType('g6e.2xlarge'),
      enclave: { cpuCount: 4, memoryMiB: 16384 },
    });
    const instanceStack = new Stack(app, 'Single', { env });
    new EnclaveGpuInstance(instanceStack, 'Inference', props(instanceStack));
    const fleetStack = new Stack(app, 'Fleet', { env });
    new EnclaveGpuFleet(fleetStack, 'Inference', props(fleetStack));
    const single = userDataOf(Template.fromStack(instanceStack));
    const fleet = launchTemplateUserData(Template.fromStack(fleetStack));
    expect(fleet).toContain('cpu_count: 4');
    expect(fleet).toContain('\n/usr/local/libexec/enclave-gpu/install-runtime \'s3://');
    expect(fleet).toContain("cat > '/etc/enclave-gpu/sgs.json' <<'ENCLAVE_GPU_EOF'");
    const [instanceId] = Object.keys(Template.fromStack(instanceStack).findResources('AWS::EC2::Instance'));
    const [groupId] = Object.keys(Template.fromStack(fleetStack).findResources('AWS::AutoScaling::AutoScalingGroup'));
    // Exactly these differ: the resource signalled, and who hears of ill health (checked by the tests of each construct).
    const healthReport = reportUnhealthyCommands('${AWS::Region}').map((line) => `  ${line}\n`).join('');
    const bootReport = '  aws autoscaling set-instance-health --instance-id "$(imds_instance_id)" --health-status Unhealthy --no-should-respect-grace-period --region ${AWS::Region} || echo "not reported to Auto Scaling (refused)"\n';
    expect(fleet).toContain(healthReport);
    expect(fleet).toContain(bootReport);
    const asSingle = fleet
      .replace(`--stack-name 'Fleet' --logical-resource-id '${groupId}'`, `--stack-name 'Single' --logical-resource-id '${instanceId}'`)
      .replace(healthReport, '  echo "instance unhealthy: it is in no Auto Scaling group, so repair or replace it"\n')
      .replace(bootReport, '');
    expect(asSingle).toBe(single);
  });

  it('scales on GPU utilization, or not at all', () => {
    synth({ scaling: FleetScaling.gpuUtilization(70) }).template.hasResourceProperties('AWS::AutoScaling::ScalingPolicy', {
      TargetTrackingConfiguration: { CustomizedMetricSpecification: Match.objectLike({ MetricName: 'GPUUtilization', Statistic: 'Average' }), TargetValue: 70 },
    });
    synth({ scaling: FleetScaling.none() }).template.resourceCountIs('AWS::AutoScaling::ScalingPolicy', 0);
  });

  it('applies capacity, grace period and notifications', () => {
    const { stack, vpc } = testStack();
    const topic = new sns.Topic(stack, 'Events');
    new EnclaveGpuFleet(stack, 'Inference', {
      vpc, enclaveImage: EnclaveImage.fromEifFile(eifPath), minCapacity: 3, maxCapacity: 9, healthCheckGracePeriod: Duration.minutes(20), notificationsTopic: topic,
    });
    const template = Template.fromStack(stack);
    template.hasResource('AWS::AutoScaling::AutoScalingGroup', {
      Properties: Match.objectLike({ MinSize: '3', MaxSize: '9', HealthCheckGracePeriod: 1200, NotificationConfigurations: [Match.objectLike({ TopicARN: { Ref: Match.stringLikeRegexp('^Events') } })] }),
      UpdatePolicy: { AutoScalingRollingUpdate: Match.objectLike({ MinInstancesInService: 3 }) },
    });
  });

  it.each([
    [{ minCapacity: 5, maxCapacity: 2 }, /maxCapacity 2 is below minCapacity 5/],
    [{ maxCapacity: 0 }, /maxCapacity must be a whole number from 1/],
    [{ minCapacity: 1.5 }, /minCapacity must be a whole number/],
    [{ scaling: FleetScaling.queueDepth(0) }, /TestStack\/Inference: scaling target 0 for QueueDepth must be above 0\. Pass a target above 0/],
    [{ scaling: FleetScaling.gpuUtilization(150) }, /scaling target 150 for GPUUtilization must be above 0 and at most 100/],
    [{ scaling: FleetScaling.gpuUtilization(-5) }, /scaling target -5 for GPUUtilization must be above 0 and at most 100/],
    [{ scaling: FleetScaling.queueDepth(Infinity) }, /scaling target Infinity for QueueDepth must be above 0/],
    [{ bootTimeout: Duration.minutes(61) }, /TestStack\/Inference: bootTimeout 1 hour 1 minute is above 1 hour, the longest a rolling update waits for an instance/],
    [{ scaling: FleetScaling.queueDepth(4), observability: false }, /TestStack\/Inference: scaling tracks an EnclaveGPU metric, but observability is off/],
    [{ minCapacity: 0 }, /TestStack\/Inference: minCapacity 0 with scaling on QueueDepth: only running instances publish it, so a fleet of none would never scale out/],
    [{ instanceType: new ec2.InstanceType('t3.large') }, /instanceType 't3.large' is not a GPU instance type/],
    [{ enclave: { cpuCount: 3 } }, /enclave\.cpuCount must be even/],
  ])('refuses %j', (props, message) => {
    expect(() => synth(props as Partial<EnclaveGpuFleetProps>)).toThrow(message);
  });

  it('lets a new instance warm up for its boot before it counts in the scaling metrics', () => {
    const warmup = (props: Partial<EnclaveGpuFleetProps>) =>
      Object.values(synth(props).template.findResources('AWS::AutoScaling::AutoScalingGroup'))[0].Properties.DefaultInstanceWarmup;
    expect(warmup({})).toBe(1200); // the default bootTimeout, 20 minutes
    expect(warmup({ bootTimeout: Duration.minutes(45) })).toBe(2700);
    expect(warmup({ bootTimeout: Duration.hours(3), waitForReady: false })).toBe(3600); // Auto Scaling's most
  });

  it('refuses an observability construct built for one instance', () => {
    const { stack, vpc } = testStack();
    const observability = new observability_module.EnclaveGpuObservability(stack, 'Shared', { enclaveImage: ENCLAVE_IMAGE, instanceId: 'i-0123456789abcdef0' });
    expect(() => new EnclaveGpuFleet(stack, 'Inference', { vpc, observability, enclaveImage: EnclaveImage.fromEifFile(eifPath) })).toThrow(
      /TestStack\/Inference: observability watches one other instance \(instanceId i-0123456789abcdef0\), but a fleet's instances come and go: build it without instanceId/,
    );
  });

  it('is clean under cdk-nag AwsSolutions', () => {
    const { app, stack, vpc } = testStack();
    Validations.of(vpc).acknowledge({ id: 'AwsSolutions-VPC7', reason: 'Test VPC.' });
    new EnclaveGpuFleet(stack, 'Inference', { vpc, enclaveImage: EnclaveImage.fromEifFile(eifPath) });
    app.synth();
    expect(new AwsSolutionsChecks().validateScope(app).violations.map((v) => v.ruleName)).toEqual([]);
  });
});
