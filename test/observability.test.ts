import * as fs from 'node:fs';
import * as path from 'node:path';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import { App, CfnElement, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { observability } from '../lib';
import { NVIDIA_GPU_MEASUREMENTS } from '../lib/observability/metric-catalogue';
import { cfnValueAsText } from '../scripts/template-text';

const { EnclaveGpuObservability, EnclaveGpuMetrics, NvidiaGpuMeasurement } = observability;

const PCR0 = '0123456789abcdef'.repeat(6);
const IMAGE = '0123456789abcdef';
const INSTANCE = 'i-0123456789abcdef0';

/**
 * The `nvidia_gpu` measurements the CloudWatch agent accepts, copied by hand from the AWS doc
 * "Collect NVIDIA GPU metrics" (CloudWatch-Agent-NVIDIA-GPU.html), independent of the library.
 */
const AWS_DOC_NVIDIA_GPU_MEASUREMENTS = [
  'utilization_gpu',
  'temperature_gpu',
  'power_draw',
  'utilization_memory',
  'fan_speed',
  'memory_total',
  'memory_used',
  'memory_free',
  'pcie_link_gen_current',
  'pcie_link_width_current',
  'encoder_stats_session_count',
  'encoder_stats_average_fps',
  'encoder_stats_average_latency',
  'clocks_current_graphics',
  'clocks_current_sm',
  'clocks_current_memory',
  'clocks_current_video',
];

const DEFAULT_GPU_MEASUREMENTS = ['utilization_gpu', 'utilization_memory', 'memory_used', 'memory_total', 'temperature_gpu', 'power_draw'];

// ---------------------------------------------------------------------------------------------
// Helpers

function newStack(): Stack {
  return new Stack(new App(), 'ObsStack', { env: { account: '123456789012', region: 'us-east-1' } });
}

function build(
  props: Partial<observability.EnclaveGpuObservabilityProps> = {},
  configure?: (stack: Stack) => Partial<observability.EnclaveGpuObservabilityProps>,
) {
  const stack = newStack();
  const extra = configure?.(stack) ?? {};
  const obs = new EnclaveGpuObservability(stack, 'Obs', { enclaveImage: IMAGE, ...props, ...extra });
  const template = Template.fromStack(stack);
  return { stack, obs, template };
}

const logicalId = (stack: Stack, construct: { node: { defaultChild?: unknown } }) =>
  stack.getLogicalId(construct.node.defaultChild as CfnElement);

function resourceOf(template: Template, id: string): any {
  const resource = template.toJSON().Resources[id];
  if (!resource) {
    throw new Error(`no resource ${id}`);
  }
  return resource;
}

interface DashboardMetric {
  namespace: string;
  name: string;
  dimensions: Record<string, string>;
  options: Record<string, unknown>;
}

/** Reads a dashboard metric array: `[namespace, metricName, dimName, dimValue, ..., {options}?]`. */
function parseDashboardMetric(entry: unknown[]): DashboardMetric {
  const last = entry[entry.length - 1];
  const hasOptions = typeof last === 'object' && last !== null;
  const body = hasOptions ? entry.slice(0, -1) : entry;
  for (const part of body) {
    if (typeof part !== 'string') {
      throw new Error(`unexpected metric array ${JSON.stringify(entry)}`);
    }
  }
  const [namespace, name, ...pairs] = body as string[];
  if (pairs.length % 2 !== 0) {
    throw new Error(`odd dimension list in ${JSON.stringify(entry)}`);
  }
  const dimensions: Record<string, string> = {};
  for (let i = 0; i < pairs.length; i += 2) {
    dimensions[pairs[i]] = pairs[i + 1];
  }
  return { namespace, name, dimensions, options: hasOptions ? (last as Record<string, unknown>) : {} };
}

function dashboardOf(template: Template): any {
  const dashboards = Object.values(template.findResources('AWS::CloudWatch::Dashboard'));
  expect(dashboards).toHaveLength(1);
  return JSON.parse(cfnValueAsText(dashboards[0].Properties.DashboardBody));
}

/** Metric widgets by title, each with its parsed metrics. */
function metricWidgets(body: any): Map<string, DashboardMetric[]> {
  const widgets = new Map<string, DashboardMetric[]>();
  for (const widget of body.widgets) {
    if (widget.type === 'metric') {
      expect(widgets.has(widget.properties.title)).toBe(false);
      widgets.set(widget.properties.title, widget.properties.metrics.map(parseDashboardMetric));
    }
  }
  return widgets;
}

const RUNTIME_WIDGETS: Record<string, string[]> = {
  'Encrypted throughput (bytes)': ['EncryptedBytesIn', 'EncryptedBytesOut'],
  'Enclave-to-host latency (ms)': ['EnclaveToHostLatency', 'EnclaveToHostLatency'],
  'GPU utilization (%)': ['GPUUtilization'],
  'Kernel launches and attestation records': ['KernelLaunches', 'KernelAttestationRecords'],
  'Attestation failures and replays': ['AttestationFailures', 'ReplayRejected'],
  'Queue depth': ['QueueDepth'],
};
const GPU_HOST_WIDGET = 'GPU, as nvidia-smi reports it (%)';
const HOST_WIDGET = 'Host memory and root disk used (%)';

const sortedNames = (metrics: DashboardMetric[]) => metrics.map((m) => m.name).sort();

/** The agent config as parsed JSON, log group token shown as `${LogicalId}`. */
function agentConfigOf(stack: Stack, obs: observability.EnclaveGpuObservability): any {
  return JSON.parse(cfnValueAsText(stack.resolve(obs.cloudWatchAgentConfig())));
}

// ---------------------------------------------------------------------------------------------

describe('EnclaveGpuObservability dashboard', () => {
  describe.each([
    { label: 'with instanceId', instanceId: INSTANCE as string | undefined, runtimeDims: { InstanceId: INSTANCE, EnclaveImage: IMAGE } },
    { label: 'without instanceId', instanceId: undefined, runtimeDims: { EnclaveImage: IMAGE } as Record<string, string> },
  ])('$label', ({ instanceId, runtimeDims }) => {
    const { stack, obs, template } = build({ instanceId });
    const body = dashboardOf(template);
    const widgets = metricWidgets(body);

    it('puts every metric of every metric widget in the EnclaveGPU namespace', () => {
      expect(widgets.size).toBeGreaterThan(0);
      for (const [title, metrics] of widgets) {
        expect(metrics.length, title).toBeGreaterThan(0);
        for (const metric of metrics) {
          expect(metric.namespace, `${title}: ${metric.name}`).toBe('EnclaveGPU');
        }
      }
    });

    it('shows exactly the expected metrics in each runtime widget', () => {
      for (const [title, names] of Object.entries(RUNTIME_WIDGETS)) {
        expect(widgets.has(title), title).toBe(true);
        expect(sortedNames(widgets.get(title)!), title).toEqual([...names].sort());
      }
    });

    it('gives every runtime metric exactly the construct dimensions', () => {
      for (const title of Object.keys(RUNTIME_WIDGETS)) {
        for (const metric of widgets.get(title)!) {
          expect(metric.dimensions, `${title}: ${metric.name}`).toEqual(runtimeDims);
        }
      }
    });

    it('graphs latency as p50 and p99', () => {
      const stats = widgets.get('Enclave-to-host latency (ms)')!.map((m) => m.options.stat).sort();
      expect(stats).toEqual(['p50', 'p99']);
    });

    it('reads each runtime metric with its catalogue statistic', () => {
      const statOf = (title: string, name: string) =>
        widgets.get(title)!.find((m) => m.name === name)!.options.stat ?? 'Average';
      expect(statOf('Encrypted throughput (bytes)', 'EncryptedBytesIn')).toBe('Sum');
      expect(statOf('Kernel launches and attestation records', 'KernelLaunches')).toBe('Sum');
      expect(statOf('Kernel launches and attestation records', 'KernelAttestationRecords')).toBe('Sum');
      expect(statOf('Attestation failures and replays', 'AttestationFailures')).toBe('Sum');
      expect(statOf('Attestation failures and replays', 'ReplayRejected')).toBe('Sum');
      expect(statOf('GPU utilization (%)', 'GPUUtilization')).toBe('Average');
      expect(statOf('Queue depth', 'QueueDepth')).toBe('Maximum');
    });

    it('graphs with the 5-minute period', () => {
      for (const widget of body.widgets.filter((w: any) => w.type === 'metric')) {
        expect(widget.properties.period, widget.properties.title).toBe(300);
      }
    });

    if (instanceId) {
      it('has the host row: agent GPU, memory and disk metrics with InstanceId only', () => {
        expect(sortedNames(widgets.get(GPU_HOST_WIDGET)!)).toEqual(['nvidia_smi_utilization_gpu', 'nvidia_smi_utilization_memory']);
        expect(sortedNames(widgets.get(HOST_WIDGET)!)).toEqual(['disk_used_percent', 'mem_used_percent']);
        for (const metric of [...widgets.get(GPU_HOST_WIDGET)!, ...widgets.get(HOST_WIDGET)!]) {
          expect(metric.dimensions, metric.name).toEqual({ InstanceId: INSTANCE });
        }
        expect(widgets.size).toBe(Object.keys(RUNTIME_WIDGETS).length + 2);
      });
    } else {
      it('has no host row (agent metrics need an instance id)', () => {
        expect(widgets.has(GPU_HOST_WIDGET)).toBe(false);
        expect(widgets.has(HOST_WIDGET)).toBe(false);
        expect(widgets.size).toBe(Object.keys(RUNTIME_WIDGETS).length);
        const all = [...widgets.values()].flat().map((m) => m.name);
        expect(all.filter((n) => n.startsWith('nvidia_smi_') || n === 'mem_used_percent' || n === 'disk_used_percent')).toEqual([]);
      });
    }

    it('has an alarm status widget listing all four alarms', () => {
      const alarmWidgets = body.widgets.filter((w: any) => w.type === 'alarm');
      expect(alarmWidgets).toHaveLength(1);
      const expected = obs.alarms().map((alarm) => `\${${logicalId(stack, alarm)}.Arn}`);
      expect(expected).toHaveLength(4);
      expect(new Set(expected).size).toBe(4);
      expect([...alarmWidgets[0].properties.alarms].sort()).toEqual([...expected].sort());
    });
  });

  it('graphs only the nvidia-smi utilization measurements the agent collects', () => {
    const { template } = build({
      instanceId: INSTANCE,
      gpuMeasurements: [NvidiaGpuMeasurement.UTILIZATION_GPU, NvidiaGpuMeasurement.POWER_DRAW],
    });
    const widgets = metricWidgets(dashboardOf(template));
    expect(sortedNames(widgets.get(GPU_HOST_WIDGET)!)).toEqual(['nvidia_smi_utilization_gpu']);
  });

  it('uses the dashboard name and period given', () => {
    const { template } = build({ dashboardName: 'enclave-gpu', period: Duration.minutes(1) });
    template.hasResourceProperties('AWS::CloudWatch::Dashboard', { DashboardName: 'enclave-gpu' });
    const body = dashboardOf(template);
    for (const widget of body.widgets.filter((w: any) => w.type === 'metric')) {
      expect(widget.properties.period).toBe(60);
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('EnclaveGpuObservability alarms', () => {
  const fullDims = [{ Name: 'EnclaveImage', Value: IMAGE }, { Name: 'InstanceId', Value: INSTANCE }];
  const sortDims = (dims: Array<{ Name: string; Value: string }>) => [...dims].sort((a, b) => a.Name.localeCompare(b.Name));

  const { stack, obs, template } = build({ instanceId: INSTANCE });
  const alarmProps = (alarm: cloudwatch.Alarm) => resourceOf(template, logicalId(stack, alarm)).Properties;

  it('creates exactly four alarms', () => {
    template.resourceCountIs('AWS::CloudWatch::Alarm', 4);
    expect(obs.alarms()).toEqual([obs.attestationFailuresAlarm, obs.replayRejectedAlarm, obs.latencyP99Alarm, obs.gpuIdleWhileLaunchingAlarm]);
  });

  it.each([
    ['attestation failures', 'attestationFailuresAlarm', 'AttestationFailures'],
    ['replays', 'replayRejectedAlarm', 'ReplayRejected'],
  ] as const)('alarms on any %s: Sum > 0 in one 5-minute period', (_label, member, metricName) => {
    const props = alarmProps(obs[member]);
    expect(props).toMatchObject({
      Namespace: 'EnclaveGPU',
      MetricName: metricName,
      Statistic: 'Sum',
      Period: 300,
      Threshold: 0,
      ComparisonOperator: 'GreaterThanThreshold',
      EvaluationPeriods: 1,
      TreatMissingData: 'notBreaching',
    });
    expect(sortDims(props.Dimensions)).toEqual(fullDims);
    expect(props.ExtendedStatistic).toBeUndefined();
    expect(props.DatapointsToAlarm).toBeUndefined();
    expect(props.Metrics).toBeUndefined();
  });

  it('alarms on latency p99 > 250 ms in 2 of 3 periods by default', () => {
    const props = alarmProps(obs.latencyP99Alarm);
    expect(props).toMatchObject({
      Namespace: 'EnclaveGPU',
      MetricName: 'EnclaveToHostLatency',
      ExtendedStatistic: 'p99',
      Period: 300,
      Threshold: 250,
      ComparisonOperator: 'GreaterThanThreshold',
      EvaluationPeriods: 3,
      DatapointsToAlarm: 2,
      TreatMissingData: 'notBreaching',
    });
    expect(props.Statistic).toBeUndefined();
    expect(sortDims(props.Dimensions)).toEqual(fullDims);
  });

  it('uses a custom latency threshold', () => {
    const custom = build({ instanceId: INSTANCE, latencyP99Threshold: Duration.millis(80) });
    const props = resourceOf(custom.template, logicalId(custom.stack, custom.obs.latencyP99Alarm)).Properties;
    expect(props.Threshold).toBe(80);
    expect(props.ExtendedStatistic).toBe('p99');
    const inSeconds = build({ latencyP99Threshold: Duration.seconds(2) });
    expect(resourceOf(inSeconds.template, logicalId(inSeconds.stack, inSeconds.obs.latencyP99Alarm)).Properties.Threshold).toBe(2000);
  });

  it('alarms when kernels launch while the GPU is idle, as metric math', () => {
    const props = alarmProps(obs.gpuIdleWhileLaunchingAlarm);
    expect(props).toMatchObject({
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      EvaluationPeriods: 3,
      TreatMissingData: 'notBreaching',
    });
    expect(props.MetricName).toBeUndefined();
    expect(props.Statistic).toBeUndefined();
    const metrics: any[] = props.Metrics;
    expect(metrics).toHaveLength(3);
    const expressions = metrics.filter((m) => m.Expression !== undefined);
    expect(expressions).toHaveLength(1);
    expect(expressions[0]).toMatchObject({ Expression: 'IF(launches > 0 AND utilization == 0, 1, 0)', ReturnData: true });
    const byId = Object.fromEntries(metrics.filter((m) => m.MetricStat).map((m) => [m.Id, m]));
    expect(Object.keys(byId).sort()).toEqual(['launches', 'utilization']);
    for (const [id, name, stat] of [['launches', 'KernelLaunches', 'Sum'], ['utilization', 'GPUUtilization', 'Average']]) {
      expect(byId[id].ReturnData, id).toBe(false);
      expect(byId[id].MetricStat).toMatchObject({ Metric: { Namespace: 'EnclaveGPU', MetricName: name }, Stat: stat, Period: 300 });
      expect(sortDims(byId[id].MetricStat.Metric.Dimensions), id).toEqual(fullDims);
    }
  });

  it('alarms on EnclaveImage alone when there is no instanceId', () => {
    const fleet = build();
    const alarms = Object.values(fleet.template.findResources('AWS::CloudWatch::Alarm'));
    expect(alarms).toHaveLength(4);
    for (const alarm of alarms) {
      const dims = alarm.Properties.Dimensions
        ?? alarm.Properties.Metrics.filter((m: any) => m.MetricStat).flatMap((m: any) => m.MetricStat.Metric.Dimensions);
      expect(dims.length).toBeGreaterThan(0);
      for (const dim of dims) {
        expect(dim).toEqual({ Name: 'EnclaveImage', Value: IMAGE });
      }
    }
  });

  it('evaluates over the custom period', () => {
    const custom = build({ period: Duration.minutes(1) });
    const alarms = Object.values(custom.template.findResources('AWS::CloudWatch::Alarm'));
    for (const alarm of alarms) {
      const periods = alarm.Properties.Period !== undefined
        ? [alarm.Properties.Period]
        : alarm.Properties.Metrics.filter((m: any) => m.MetricStat).map((m: any) => m.MetricStat.Period);
      expect(periods.length).toBeGreaterThan(0);
      expect(new Set(periods)).toEqual(new Set([60]));
    }
  });

  it('notifies the alarm topic on alarm and on recovery', () => {
    let topic: sns.Topic | undefined;
    const withTopic = build({ instanceId: INSTANCE }, (s) => {
      topic = new sns.Topic(s, 'AlarmTopic');
      return { alarmTopic: topic };
    });
    const topicRef = { Ref: logicalId(withTopic.stack, topic!) };
    const alarms = Object.values(withTopic.template.findResources('AWS::CloudWatch::Alarm'));
    expect(alarms).toHaveLength(4);
    for (const alarm of alarms) {
      expect(alarm.Properties.AlarmActions).toEqual([topicRef]);
      expect(alarm.Properties.OKActions).toEqual([topicRef]);
    }
  });

  it('notifies no one without a topic', () => {
    const alarms = Object.values(template.findResources('AWS::CloudWatch::Alarm'));
    expect(alarms).toHaveLength(4);
    for (const alarm of alarms) {
      expect(alarm.Properties.AlarmActions).toBeUndefined();
      expect(alarm.Properties.OKActions).toBeUndefined();
      expect(alarm.Properties.InsufficientDataActions).toBeUndefined();
    }
    template.hasResourceProperties('AWS::CloudWatch::Alarm', { AlarmActions: Match.absent(), OKActions: Match.absent() });
  });
});

// ---------------------------------------------------------------------------------------------

describe('EnclaveGpuObservability kernel-attestation log', () => {
  it('keeps records a year and retains the group by default, unencrypted by a customer key', () => {
    const { stack, obs, template } = build();
    template.resourceCountIs('AWS::Logs::LogGroup', 2);
    expect(resourceOf(template, logicalId(stack, obs.kernelAttestationLogGroup))).toMatchObject({
      Properties: { RetentionInDays: 365 },
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
    });
    expect(resourceOf(template, logicalId(stack, obs.kernelAttestationLogGroup)).Properties.KmsKeyId).toBeUndefined();
  });

  it('uses a custom retention and removal policy', () => {
    const { stack, obs, template } = build({ logRetention: logs.RetentionDays.ONE_MONTH, logRemovalPolicy: RemovalPolicy.DESTROY });
    expect(resourceOf(template, logicalId(stack, obs.kernelAttestationLogGroup))).toMatchObject({
      Properties: { RetentionInDays: 30 },
      DeletionPolicy: 'Delete',
      UpdateReplacePolicy: 'Delete',
    });
  });

  it('keeps boot logs a month by default, deleted with the stack, encrypted with the same key', () => {
    const { stack, obs, template } = build();
    expect(resourceOf(template, logicalId(stack, obs.bootLogGroup))).toMatchObject({
      Properties: { RetentionInDays: 30 },
      DeletionPolicy: 'Delete',
      UpdateReplacePolicy: 'Delete',
    });
    const custom = build({ bootLogRetention: logs.RetentionDays.ONE_WEEK }, (s) => ({ logEncryptionKey: new kms.Key(s, 'LogKey') }));
    const bootLog = resourceOf(custom.template, logicalId(custom.stack, custom.obs.bootLogGroup));
    expect(bootLog.Properties.RetentionInDays).toBe(7);
    expect(bootLog.Properties.KmsKeyId).toEqual({ 'Fn::GetAtt': [expect.stringMatching(/^LogKey/), 'Arn'] });
  });

  it('encrypts with the given key and lets CloudWatch Logs of the region use it', () => {
    let key: kms.Key | undefined;
    const { stack, template } = build({}, (s) => {
      key = new kms.Key(s, 'LogKey');
      return { logEncryptionKey: key };
    });
    const keyId = logicalId(stack, key!);
    template.hasResourceProperties('AWS::Logs::LogGroup', { KmsKeyId: { 'Fn::GetAtt': [keyId, 'Arn'] } });
    const statements: any[] = resourceOf(template, keyId).Properties.KeyPolicy.Statement;
    const forLogs = statements.filter((s) => JSON.stringify(s.Principal) === JSON.stringify({ Service: 'logs.us-east-1.amazonaws.com' }));
    expect(forLogs).toHaveLength(1);
    expect(forLogs[0].Effect).toBe('Allow');
    const actions = [forLogs[0].Action].flat();
    // What the CloudWatch Logs guide's key policy grants the service: encrypt, decrypt, re-encrypt,
    // generate data keys and describe (CDK writes a service principal's grant with wildcards).
    const covers = (action: string) => actions.some((a) => a === action || (a.endsWith('*') && action.startsWith(a.slice(0, -1))));
    for (const action of ['kms:Encrypt', 'kms:Decrypt', 'kms:ReEncryptFrom', 'kms:ReEncryptTo', 'kms:GenerateDataKey', 'kms:DescribeKey']) {
      expect(covers(action), action).toBe(true);
    }
    expect(actions.every((a) => a.startsWith('kms:') && a !== 'kms:*')).toBe(true);
    expect(actions.some((a) => /^kms:(Create|Delete|Disable|Put|ScheduleKeyDeletion|Update)/.test(a))).toBe(false);
    // ... and only for log groups of this account and region.
    const condition = forLogs[0].Condition?.ArnLike?.['kms:EncryptionContext:aws:logs:arn'];
    expect(condition, JSON.stringify(forLogs[0].Condition)).toBeDefined();
    expect(cfnValueAsText(condition)).toBe('arn:${AWS::Partition}:logs:us-east-1:123456789012:log-group:*');
  });

  it.each([
    ['a China region', { region: 'cn-north-1' }, 'logs.cn-north-1.amazonaws.com.cn'],
    ['an environment-agnostic stack', undefined, 'logs.${AWS::Region}.${AWS::URLSuffix}'],
  ])('names the CloudWatch Logs principal of %s with its domain', (_label, env, principal) => {
    const stack = new Stack(new App(), 'ObsStack', env && { env });
    const key = new kms.Key(stack, 'LogKey');
    new EnclaveGpuObservability(stack, 'Obs', { enclaveImage: IMAGE, logEncryptionKey: key });
    const statements: any[] = resourceOf(Template.fromStack(stack), logicalId(stack, key)).Properties.KeyPolicy.Statement;
    const services = statements.map((s) => s.Principal?.Service).filter((service) => service !== undefined).map(cfnValueAsText);
    expect(services).toEqual([principal]);
  });

  it('counts records with the codeSha384 field, once per dimension set the runtime publishes', () => {
    const { stack, obs, template } = build();
    template.resourceCountIs('AWS::Logs::MetricFilter', 2);
    const transformation = (dimensions: Array<{ Key: string; Value: string }>) => ({
      LogGroupName: { Ref: logicalId(stack, obs.kernelAttestationLogGroup) },
      FilterPattern: '{ $.codeSha384 = "*" }',
      MetricTransformations: [{
        MetricNamespace: 'EnclaveGPU',
        MetricName: 'KernelAttestationRecords',
        MetricValue: '1',
        Unit: 'Count',
        Dimensions: Match.arrayEquals(dimensions),
      }],
    });
    template.hasResourceProperties('AWS::Logs::MetricFilter', transformation([
      { Key: 'InstanceId', Value: '$.instanceId' },
      { Key: 'EnclaveImage', Value: '$.enclaveImage' },
    ]));
    template.hasResourceProperties('AWS::Logs::MetricFilter', transformation([{ Key: 'EnclaveImage', Value: '$.enclaveImage' }]));
  });

  it('publishes the records metric with every dimension set the dashboard reads it with', () => {
    for (const instanceId of [INSTANCE, undefined]) {
      const { template } = build(instanceId ? { instanceId } : {});
      const published = Object.values(template.findResources('AWS::Logs::MetricFilter'))
        .map((f: any) => f.Properties.MetricTransformations[0].Dimensions.map((d: any) => d.Key).sort().join(','));
      const dashboard: any = Object.values(template.findResources('AWS::CloudWatch::Dashboard'))[0];
      const body = JSON.parse(cfnValueAsText(dashboard.Properties.DashboardBody));
      const read = body.widgets.flatMap((w: any) => w.properties.metrics ?? [])
        .filter((m: any[]) => m[1] === 'KernelAttestationRecords')
        .map((m: any[]) => m.slice(2).filter((x: unknown) => typeof x === 'string').filter((_: string, i: number) => i % 2 === 0).sort().join(','));
      expect(read.length).toBeGreaterThan(0);
      for (const dims of read) expect(published).toContain(dims);
    }
  });

  it('refuses an instanceId that is not an instance id', () => {
    expect(() => build({ instanceId: '' })).toThrow(/instanceId must be an EC2 instance id/);
    expect(() => build({ instanceId: 'web-1' })).toThrow(/instanceId must be an EC2 instance id \(i-\.\.\.\), got 'web-1'/);
  });
});

// ---------------------------------------------------------------------------------------------

describe('EnclaveGpuObservability CloudWatch agent config', () => {
  const { stack, obs } = build({ instanceId: INSTANCE });
  const config = agentConfigOf(stack, obs);

  it('is JSON that ends with a newline', () => {
    expect(obs.cloudWatchAgentConfig().endsWith('}\n')).toBe(true);
  });

  it('publishes into EnclaveGPU tagged with, and aggregated to, the instance id', () => {
    expect(config.metrics.namespace).toBe('EnclaveGPU');
    expect(config.metrics.append_dimensions).toEqual({ InstanceId: '${aws:InstanceId}' });
    expect(config.metrics.aggregation_dimensions).toEqual([['InstanceId']]);
    expect(config.agent.metrics_collection_interval).toBe(60);
  });

  it('collects the default GPU measurements, each one the agent accepts', () => {
    const measurement: string[] = config.metrics.metrics_collected.nvidia_gpu.measurement;
    expect(measurement).toEqual(DEFAULT_GPU_MEASUREMENTS);
    for (const name of measurement) {
      expect(AWS_DOC_NVIDIA_GPU_MEASUREMENTS, name).toContain(name);
    }
  });

  it('NvidiaGpuMeasurement and NVIDIA_GPU_MEASUREMENTS are exactly the names the AWS doc lists', () => {
    expect(AWS_DOC_NVIDIA_GPU_MEASUREMENTS).toHaveLength(17);
    expect([...NVIDIA_GPU_MEASUREMENTS].sort()).toEqual([...AWS_DOC_NVIDIA_GPU_MEASUREMENTS].sort());
    expect(NVIDIA_GPU_MEASUREMENTS).toHaveLength(17);
    expect(Object.values(NvidiaGpuMeasurement).sort()).toEqual([...AWS_DOC_NVIDIA_GPU_MEASUREMENTS].sort());
  });

  it('collects host memory and root disk use', () => {
    expect(config.metrics.metrics_collected.mem).toEqual({ measurement: ['mem_used_percent'] });
    expect(config.metrics.metrics_collected.disk).toEqual({ measurement: ['used_percent'], resources: ['/'] });
  });

  it('ships the kernel-attestation log and the boot log to their groups, one stream per instance', () => {
    const collectList = config.logs.logs_collected.files.collect_list;
    expect(collectList).toEqual([{
      file_path: '/var/log/enclave-gpu/kernel-attestation.jsonl',
      log_group_name: `\${${logicalId(stack, obs.kernelAttestationLogGroup)}}`,
      log_stream_name: '{instance_id}',
    }, {
      file_path: '/var/log/enclave-gpu-boot.log',
      log_group_name: `\${${logicalId(stack, obs.bootLogGroup)}}`,
      log_stream_name: '{instance_id}',
    }]);
  });

  it('renders custom GPU measurements and collection interval', () => {
    const custom = build({
      gpuMeasurements: [NvidiaGpuMeasurement.POWER_DRAW, NvidiaGpuMeasurement.CLOCKS_CURRENT_SM],
      agentCollectionInterval: Duration.seconds(10),
    });
    const customConfig = agentConfigOf(custom.stack, custom.obs);
    expect(customConfig.metrics.metrics_collected.nvidia_gpu.measurement).toEqual(['power_draw', 'clocks_current_sm']);
    expect(customConfig.agent.metrics_collection_interval).toBe(10);
    const inMinutes = build({ agentCollectionInterval: Duration.minutes(2) });
    expect(agentConfigOf(inMinutes.stack, inMinutes.obs).agent.metrics_collection_interval).toBe(120);
  });
});

// ---------------------------------------------------------------------------------------------

describe('EnclaveGpuObservability validation', () => {
  const make = (props: Partial<observability.EnclaveGpuObservabilityProps>) => () =>
    new EnclaveGpuObservability(newStack(), 'Obs', { enclaveImage: IMAGE, ...props });

  it.each([
    ['upper-case hex', IMAGE.toUpperCase()],
    ['too short', IMAGE.slice(0, 15)],
    ['too long', `${IMAGE}0`],
    ['the full 96-character PCR0', PCR0],
    ['not hex', 'ghijklmnopqrstuv'],
    ['empty', ''],
  ])('rejects an enclaveImage that is %s', (_label, enclaveImage) => {
    expect(make({ enclaveImage })).toThrow(/enclaveImage/);
  });

  it('accepts a 16-character lower-case hex enclaveImage', () => {
    expect(make({ enclaveImage: EnclaveGpuMetrics.enclaveImageDimension(PCR0) })).not.toThrow();
  });

  it('rejects an unknown GPU measurement, naming it', () => {
    expect(make({ gpuMeasurements: [NvidiaGpuMeasurement.UTILIZATION_GPU, 'gpu_util' as any] })).toThrow(/gpuMeasurements.*'gpu_util'/);
  });

  it.each([
    ['zero', Duration.seconds(0)],
    ['a fraction of a second', Duration.millis(1500)],
    ['more than two days', Duration.seconds(172_801)],
  ])('rejects an agentCollectionInterval of %s, naming the bounds', (_label, agentCollectionInterval) => {
    expect(make({ agentCollectionInterval })).toThrow(/agentCollectionInterval must be whole seconds from 1 to 172800/);
  });

  it('accepts agentCollectionInterval at its bounds', () => {
    expect(make({ agentCollectionInterval: Duration.seconds(1) })).not.toThrow();
    expect(make({ agentCollectionInterval: Duration.days(2) })).not.toThrow();
  });

  it('rejects an empty GPU measurement list', () => {
    expect(make({ gpuMeasurements: [] })).toThrow(/gpuMeasurements/);
  });

  it('rejects a duplicate GPU measurement', () => {
    expect(make({ gpuMeasurements: [NvidiaGpuMeasurement.POWER_DRAW, NvidiaGpuMeasurement.POWER_DRAW] })).toThrow(/gpuMeasurements/);
  });

  it('synthesizes without warnings or errors', () => {
    const { stack } = build({ instanceId: INSTANCE });
    Annotations.fromStack(stack).hasNoWarning('*', Match.anyValue());
    Annotations.fromStack(stack).hasNoError('*', Match.anyValue());
  });
});

// ---------------------------------------------------------------------------------------------

describe('EnclaveGpuObservability metric helpers', () => {
  const { obs } = build({ instanceId: INSTANCE });

  const cases: Array<[string, (o: observability.EnclaveGpuObservability, p?: cloudwatch.MetricOptions) => cloudwatch.Metric, string, string, cloudwatch.Unit]> = [
    ['metricEncryptedBytesIn', (o, p) => o.metricEncryptedBytesIn(p), 'EncryptedBytesIn', 'Sum', cloudwatch.Unit.BYTES],
    ['metricEncryptedBytesOut', (o, p) => o.metricEncryptedBytesOut(p), 'EncryptedBytesOut', 'Sum', cloudwatch.Unit.BYTES],
    ['metricEnclaveToHostLatency', (o, p) => o.metricEnclaveToHostLatency(p), 'EnclaveToHostLatency', 'p99', cloudwatch.Unit.MILLISECONDS],
    ['metricGpuUtilization', (o, p) => o.metricGpuUtilization(p), 'GPUUtilization', 'Average', cloudwatch.Unit.PERCENT],
    ['metricKernelLaunches', (o, p) => o.metricKernelLaunches(p), 'KernelLaunches', 'Sum', cloudwatch.Unit.COUNT],
    ['metricAttestationFailures', (o, p) => o.metricAttestationFailures(p), 'AttestationFailures', 'Sum', cloudwatch.Unit.COUNT],
    ['metricReplayRejected', (o, p) => o.metricReplayRejected(p), 'ReplayRejected', 'Sum', cloudwatch.Unit.COUNT],
    ['metricQueueDepth', (o, p) => o.metricQueueDepth(p), 'QueueDepth', 'Maximum', cloudwatch.Unit.COUNT],
    ['metricKernelAttestationRecords', (o, p) => o.metricKernelAttestationRecords(p), 'KernelAttestationRecords', 'Sum', cloudwatch.Unit.COUNT],
  ];

  it.each(cases)('%s', (_name, get, metricName, statistic, unit) => {
    const metric = get(obs);
    expect(metric).toBeInstanceOf(cloudwatch.Metric);
    expect(metric.namespace).toBe('EnclaveGPU');
    expect(metric.metricName).toBe(metricName);
    expect(metric.dimensions).toEqual({ InstanceId: INSTANCE, EnclaveImage: IMAGE });
    expect(metric.statistic).toBe(statistic);
    expect(metric.unit).toBe(unit);
    expect(metric.period.toSeconds()).toBe(300);
  });

  it.each(cases)('%s applies MetricOptions', (_name, get, metricName) => {
    const metric = get(obs, { statistic: 'Minimum', period: Duration.minutes(1), label: 'mine' });
    expect(metric.metricName).toBe(metricName);
    expect(metric.statistic).toBe('Minimum');
    expect(metric.period.toSeconds()).toBe(60);
    expect(metric.label).toBe('mine');
    expect(metric.namespace).toBe('EnclaveGPU');
  });

  it('uses EnclaveImage alone without instanceId', () => {
    const fleet = build();
    expect(fleet.obs.metricQueueDepth().dimensions).toEqual({ EnclaveImage: IMAGE });
  });
});

// ---------------------------------------------------------------------------------------------

describe('EnclaveGpuObservability agent permissions', () => {
  const AGENT_ACTIONS = ['logs:CreateLogStream', 'logs:DescribeLogStreams', 'logs:PutLogEvents'];

  it('agentPolicyStatements writes to the kernel-attestation and boot log groups only', () => {
    const { stack, obs } = build();
    const statements = obs.agentPolicyStatements().map((s) => stack.resolve(s.toStatementJson()));
    expect(statements).toHaveLength(1);
    expect(statements[0].Effect).toBe('Allow');
    expect([statements[0].Action].flat().sort()).toEqual(AGENT_ACTIONS);
    expect(statements[0].Resource).toEqual([
      { 'Fn::GetAtt': [logicalId(stack, obs.kernelAttestationLogGroup), 'Arn'] },
      { 'Fn::GetAtt': [logicalId(stack, obs.bootLogGroup), 'Arn'] },
    ]);
  });

  it('grantAgent adds them to the role', () => {
    const stack = newStack();
    const obs = new EnclaveGpuObservability(stack, 'Obs', { enclaveImage: IMAGE });
    const role = new iam.Role(stack, 'InstanceRole', { assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com') });
    obs.grantAgent(role);
    const template = Template.fromStack(stack);
    const policies = Object.values(template.findResources('AWS::IAM::Policy'));
    expect(policies).toHaveLength(1);
    expect(policies[0].Properties.Roles).toEqual([{ Ref: logicalId(stack, role) }]);
    const statements: any[] = policies[0].Properties.PolicyDocument.Statement;
    expect(statements).toHaveLength(1);
    expect([statements[0].Action].flat().sort()).toEqual(AGENT_ACTIONS);
    expect(statements[0].Resource).toEqual([
      { 'Fn::GetAtt': [logicalId(stack, obs.kernelAttestationLogGroup), 'Arn'] },
      { 'Fn::GetAtt': [logicalId(stack, obs.bootLogGroup), 'Arn'] },
    ]);
    expect(JSON.stringify(statements)).not.toContain('"*"');
  });
});

// ---------------------------------------------------------------------------------------------

describe('EnclaveGpuMetrics', () => {
  it('names the EnclaveGPU namespace', () => {
    expect(EnclaveGpuMetrics.NAMESPACE).toBe('EnclaveGPU');
  });

  it('takes the first 16 characters of PCR0 as the EnclaveImage dimension', () => {
    const pcr0 = 'fedcba9876543210'.padEnd(96, 'a');
    expect(EnclaveGpuMetrics.enclaveImageDimension(pcr0)).toBe('fedcba9876543210');
  });

  it.each([
    ['upper case', PCR0.toUpperCase()],
    ['too short', PCR0.slice(0, 95)],
    ['too long', `${PCR0}0`],
    ['an EnclaveImage value', IMAGE],
    ['0x-prefixed', `0x${PCR0.slice(2)}`],
  ])('rejects a PCR0 that is %s', (_label, pcr0) => {
    expect(() => EnclaveGpuMetrics.enclaveImageDimension(pcr0)).toThrow(/pcr0/);
  });
});

// ---------------------------------------------------------------------------------------------

describe('metric catalogue', () => {
  const DIR = path.resolve(__dirname, '..', 'lib', 'observability');
  /** Every module a source file loads: static and type imports, re-exports, require() and import(). */
  const moduleSpecifiers = (file: string) => {
    const source = fs.readFileSync(path.join(DIR, file), 'utf8');
    const patterns = [
      /\bimport\s+(?:type\s+)?[^'";]*?\bfrom\s*['"]([^'"]+)['"]/g,
      /\bimport\s*['"]([^'"]+)['"]/g,
      /\bexport\s+(?:type\s+)?[^'";]*?\bfrom\s*['"]([^'"]+)['"]/g,
      /\brequire\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
      /\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
    ];
    return { source, specifiers: [...new Set(patterns.flatMap((p) => [...source.matchAll(p)].map((m) => m[1])))] };
  };

  it('metric-catalogue.ts imports nothing but nvidia-gpu-measurement.ts', () => {
    const { source, specifiers } = moduleSpecifiers('metric-catalogue.ts');
    expect(specifiers).toEqual(['./nvidia-gpu-measurement']);
    expect(source).not.toMatch(/['"]aws-cdk-lib|['"]constructs['"]/);
  });

  it('nvidia-gpu-measurement.ts imports nothing', () => {
    const { source, specifiers } = moduleSpecifiers('nvidia-gpu-measurement.ts');
    expect(specifiers.filter((s) => s !== './metric-catalogue')).toEqual([]);
    expect(source).not.toMatch(/['"]aws-cdk-lib|['"]constructs['"]/);
  });

  it('the import scan does see imports', () => {
    // Guard against a scan that silently finds nothing: the construct file imports aws-cdk-lib.
    expect(moduleSpecifiers('enclave-gpu-observability.ts').specifiers).toEqual(
      expect.arrayContaining(['aws-cdk-lib', 'constructs', './metric-catalogue', 'aws-cdk-lib/aws-cloudwatch']),
    );
  });
});
