import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cloudwatch_actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import { ArnFormat, Duration, RemovalPolicy, Stack, Token } from 'aws-cdk-lib';
import { RegionInfo } from 'aws-cdk-lib/region-info';
import { Construct } from 'constructs';
import { renderAgentConfig, unknownGpuMeasurements } from './cloudwatch-agent-config';
import {
  AGENT_HOST_METRICS,
  DIMENSIONS,
  ENCLAVE_IMAGE_DIMENSION_LENGTH,
  KERNEL_ATTESTATION_RECORDS,
  MetricDefinition,
  NAMESPACE,
  RUNTIME_DIMENSION_SETS,
  RUNTIME_METRICS,
  agentGpuMetricName,
} from './metric-catalogue';
import { NvidiaGpuMeasurement } from './nvidia-gpu-measurement';

/**
 * Properties of an {@link EnclaveGpuObservability}.
 */
export interface EnclaveGpuObservabilityProps {
  /**
   * The `EnclaveImage` dimension value: the first 16 hex characters of the enclave image's
   * PCR0 (`EnclaveGpuMetrics.enclaveImageDimension(pcr0)`).
   */
  readonly enclaveImage: string;

  /**
   * The parent instance. When given, metrics, dashboard and alarms are per instance
   * (dimensions `InstanceId` and `EnclaveImage`); otherwise they cover every instance that
   * runs the image (dimension `EnclaveImage`).
   *
   * @default - all instances running the image
   */
  readonly instanceId?: string;

  /**
   * Where alarms notify, on alarm and on recovery.
   *
   * @default - no notification
   */
  readonly alarmTopic?: sns.ITopic;

  /**
   * The enclave-to-host latency p99 above which the latency alarm fires.
   *
   * @default Duration.millis(250)
   */
  readonly latencyP99Threshold?: Duration;

  /**
   * The period of alarm evaluation and dashboard graphs.
   *
   * @default Duration.minutes(5)
   */
  readonly period?: Duration;

  /**
   * The name of the dashboard.
   *
   * @default - a name CloudFormation generates
   */
  readonly dashboardName?: string;

  /**
   * How long kernel-attestation records are kept.
   *
   * @default logs.RetentionDays.ONE_YEAR
   */
  readonly logRetention?: logs.RetentionDays;

  /**
   * What happens to the kernel-attestation log group when it leaves the stack.
   *
   * @default RemovalPolicy.RETAIN - they are audit records
   */
  readonly logRemovalPolicy?: RemovalPolicy;

  /**
   * How long the instances' boot logs are kept (the boot script's output, one stream per
   * instance: what failed when an instance did not become ready). The log group is deleted
   * with the stack.
   *
   * @default logs.RetentionDays.ONE_MONTH
   */
  readonly bootLogRetention?: logs.RetentionDays;

  /**
   * A KMS key to encrypt the kernel-attestation and boot log groups with. When it is a key this
   * stack owns, its policy lets the CloudWatch Logs service of the stack's region use it for
   * this account's log groups; for an imported key, add that statement yourself. Not an
   * `AttestationBoundKey`: its policy refuses everyone without an enclave attestation.
   *
   * @default - encrypted by CloudWatch Logs with an AWS owned key
   */
  readonly logEncryptionKey?: kms.IKey;

  /**
   * The CloudWatch agent's `nvidia_gpu` measurements.
   *
   * @default - utilization_gpu, utilization_memory, memory_used, memory_total, temperature_gpu, power_draw
   */
  readonly gpuMeasurements?: NvidiaGpuMeasurement[];

  /**
   * How often the CloudWatch agent collects host and GPU metrics: whole seconds from 1 to
   * 172800 (the agent's own bounds). Under 60 seconds the agent publishes high-resolution
   * metrics, which CloudWatch prices higher.
   *
   * @default Duration.seconds(60)
   */
  readonly agentCollectionInterval?: Duration;
}

const DEFAULT_GPU_MEASUREMENTS = [
  NvidiaGpuMeasurement.UTILIZATION_GPU,
  NvidiaGpuMeasurement.UTILIZATION_MEMORY,
  NvidiaGpuMeasurement.MEMORY_USED,
  NvidiaGpuMeasurement.MEMORY_TOTAL,
  NvidiaGpuMeasurement.TEMPERATURE_GPU,
  NvidiaGpuMeasurement.POWER_DRAW,
];

/**
 * Everything an operator needs to watch GPU enclaves, in the `EnclaveGPU` namespace: a
 * dashboard, alarms on attestation failures, replays, latency and a GPU that sits idle while
 * kernels are launched, the kernel-attestation log group with its metric filter, metric
 * helpers for your own alarms, and the CloudWatch agent configuration the instances run.
 */
export class EnclaveGpuObservability extends Construct {
  /** The `EnclaveImage` dimension value its metrics, dashboard and alarms use. */
  public readonly enclaveImage: string;

  /** The instance its metrics are for; undefined when they cover every instance running the image. */
  public readonly instanceId?: string;

  /** The kernel-attestation log group (one JSON record per kernel launch). */
  public readonly kernelAttestationLogGroup: logs.LogGroup;

  /** The instances' boot logs (the boot script's output), one stream per instance. */
  public readonly bootLogGroup: logs.LogGroup;

  /** The dashboard. */
  public readonly dashboard: cloudwatch.Dashboard;

  /** Fires when any session is refused for its attestation. */
  public readonly attestationFailuresAlarm: cloudwatch.Alarm;

  /** Fires when any frame is refused as a replay. */
  public readonly replayRejectedAlarm: cloudwatch.Alarm;

  /** Fires when the enclave-to-host latency p99 stays above the threshold. */
  public readonly latencyP99Alarm: cloudwatch.Alarm;

  /** Fires when kernels are launched but the GPU reports no utilization. */
  public readonly gpuIdleWhileLaunchingAlarm: cloudwatch.Alarm;

  private readonly dimensions: { [name: string]: string };
  private readonly period: Duration;
  private readonly gpuMeasurements: NvidiaGpuMeasurement[];
  private readonly agentCollectionInterval: Duration;

  constructor(scope: Construct, id: string, props: EnclaveGpuObservabilityProps) {
    super(scope, id);
    if (!Token.isUnresolved(props.enclaveImage) && !new RegExp(`^[0-9a-f]{${ENCLAVE_IMAGE_DIMENSION_LENGTH}}$`).test(props.enclaveImage)) {
      throw new Error(
        `${this.node.path}: enclaveImage must be the first ${ENCLAVE_IMAGE_DIMENSION_LENGTH} lower-case hex characters of the image's PCR0, got '${props.enclaveImage}'. ` +
        'Use EnclaveGpuMetrics.enclaveImageDimension(pcr0).',
      );
    }
    if (props.instanceId !== undefined && !Token.isUnresolved(props.instanceId) && !/^i-[0-9a-f]{8,17}$/.test(props.instanceId)) {
      throw new Error(`${this.node.path}: instanceId must be an EC2 instance id (i-...), got '${props.instanceId}'. Leave it out to cover every instance that runs the image.`);
    }
    this.enclaveImage = props.enclaveImage;
    this.instanceId = props.instanceId;
    this.dimensions = {
      ...(props.instanceId !== undefined ? { [DIMENSIONS.instanceId]: props.instanceId } : {}),
      [DIMENSIONS.enclaveImage]: props.enclaveImage,
    };
    this.period = props.period ?? Duration.minutes(5);
    this.gpuMeasurements = checkGpuMeasurements(this, props.gpuMeasurements ?? DEFAULT_GPU_MEASUREMENTS);
    this.agentCollectionInterval = checkAgentCollectionInterval(this, props.agentCollectionInterval ?? Duration.seconds(60));

    this.kernelAttestationLogGroup = this.createKernelAttestationLog(props);
    this.bootLogGroup = new logs.LogGroup(this, 'BootLog', {
      retention: props.bootLogRetention ?? logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
      encryptionKey: props.logEncryptionKey,
    });

    this.attestationFailuresAlarm = this.anyAboveZeroAlarm('AttestationFailuresAlarm', this.metricAttestationFailures(),
      'A session was refused because its attestation document did not verify or its PCRs were not allowed.');
    this.replayRejectedAlarm = this.anyAboveZeroAlarm('ReplayRejectedAlarm', this.metricReplayRejected(),
      'A frame was refused as a replay: someone between enclave and GPU resent old ciphertext.');
    this.latencyP99Alarm = new cloudwatch.Alarm(this, 'LatencyP99Alarm', {
      alarmDescription: 'Enclave-to-host latency p99 is above its threshold.',
      metric: this.metricEnclaveToHostLatency({ statistic: 'p99' }),
      threshold: (props.latencyP99Threshold ?? Duration.millis(250)).toMilliseconds(),
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 3,
      datapointsToAlarm: 2,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    this.gpuIdleWhileLaunchingAlarm = new cloudwatch.Alarm(this, 'GpuIdleWhileLaunchingAlarm', {
      alarmDescription: 'Kernels are being launched but GPU utilization stays at 0: they run on the CPU (onnx.run without onnxruntime\'s CUDA provider, see GpuRuntime onnxCudaProviderSha512, or built-in kernels; the kernel-attestation log names the device of each launch) or the execution context is stuck.',
      metric: new cloudwatch.MathExpression({
        expression: 'IF(launches > 0 AND utilization == 0, 1, 0)',
        usingMetrics: { launches: this.metricKernelLaunches(), utilization: this.metricGpuUtilization() },
        label: 'GPU idle while kernels launch',
        period: this.period,
      }),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 3,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    if (props.alarmTopic) {
      const action = new cloudwatch_actions.SnsAction(props.alarmTopic);
      for (const alarm of this.alarms()) {
        alarm.addAlarmAction(action);
        alarm.addOkAction(action);
      }
    }

    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      dashboardName: props.dashboardName,
      defaultInterval: Duration.hours(3),
      widgets: this.dashboardRows(props.instanceId !== undefined),
    });
  }

  /** The four alarms, for your own actions. */
  public alarms(): cloudwatch.Alarm[] {
    return [this.attestationFailuresAlarm, this.replayRejectedAlarm, this.latencyP99Alarm, this.gpuIdleWhileLaunchingAlarm];
  }

  /**
   * The CloudWatch agent configuration (JSON) for the instances: GPU, memory and disk
   * metrics into `EnclaveGPU`, and the kernel-attestation and boot logs shipped to their groups.
   */
  public cloudWatchAgentConfig(): string {
    return renderAgentConfig({
      gpuMeasurements: this.gpuMeasurements,
      collectionIntervalSeconds: this.agentCollectionInterval.toSeconds(),
      kernelAttestationLogGroupName: this.kernelAttestationLogGroup.logGroupName,
      bootLogGroupName: this.bootLogGroup.logGroupName,
    });
  }

  /**
   * What the CloudWatch agent needs beyond `cloudwatch:PutMetricData` in the `EnclaveGPU`
   * namespace: writing to the kernel-attestation and boot log groups.
   */
  public agentPolicyStatements(): iam.PolicyStatement[] {
    return [new iam.PolicyStatement({
      sid: 'ShipLogs',
      actions: ['logs:CreateLogStream', 'logs:PutLogEvents', 'logs:DescribeLogStreams'],
      resources: [this.kernelAttestationLogGroup.logGroupArn, this.bootLogGroup.logGroupArn],
    })];
  }

  /** Gives the grantee (an instance role) {@link agentPolicyStatements}. */
  public grantAgent(grantee: iam.IGrantable): void {
    this.agentPolicyStatements().forEach((statement) => grantee.grantPrincipal.addToPrincipalPolicy(statement));
  }

  /** Ciphertext bytes from enclaves to the GPU (Sum). */
  public metricEncryptedBytesIn(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric(RUNTIME_METRICS.encryptedBytesIn, props);
  }

  /** Ciphertext bytes back to enclaves (Sum). */
  public metricEncryptedBytesOut(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric(RUNTIME_METRICS.encryptedBytesOut, props);
  }

  /** Enclave-to-host round-trip latency, milliseconds (p99 unless you pick a statistic). */
  public metricEnclaveToHostLatency(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric(RUNTIME_METRICS.enclaveToHostLatency, props);
  }

  /** GPU utilization by enclave sessions, percent (Average). */
  public metricGpuUtilization(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric(RUNTIME_METRICS.gpuUtilization, props);
  }

  /** Kernel launches (Sum). */
  public metricKernelLaunches(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric(RUNTIME_METRICS.kernelLaunches, props);
  }

  /** Sessions refused for their attestation (Sum). */
  public metricAttestationFailures(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric(RUNTIME_METRICS.attestationFailures, props);
  }

  /** Frames refused as replays (Sum). */
  public metricReplayRejected(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric(RUNTIME_METRICS.replayRejected, props);
  }

  /** Requests waiting for the GPU (Maximum). */
  public metricQueueDepth(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric(RUNTIME_METRICS.queueDepth, props);
  }

  /** Kernel-attestation records that reached CloudWatch Logs (Sum); compare with KernelLaunches. */
  public metricKernelAttestationRecords(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric(KERNEL_ATTESTATION_RECORDS, props);
  }

  private metric(definition: MetricDefinition, props: cloudwatch.MetricOptions = {}): cloudwatch.Metric {
    return new cloudwatch.Metric({
      namespace: NAMESPACE,
      metricName: definition.name,
      dimensionsMap: this.dimensions,
      statistic: definition.statistic,
      unit: definition.unit as cloudwatch.Unit, // the catalogue's units are CloudWatch unit names
      period: this.period,
      ...props,
    });
  }

  private anyAboveZeroAlarm(id: string, metric: cloudwatch.Metric, description: string): cloudwatch.Alarm {
    return new cloudwatch.Alarm(this, id, {
      alarmDescription: description,
      metric,
      threshold: 0,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
  }

  private createKernelAttestationLog(props: EnclaveGpuObservabilityProps): logs.LogGroup {
    if (props.logEncryptionKey) {
      // As the CloudWatch Logs guide asks: the regional service may use the key, for this account's log groups only.
      const stack = Stack.of(this);
      props.logEncryptionKey.addToResourcePolicy(new iam.PolicyStatement({
        sid: 'CloudWatchLogsEnclaveGpu',
        principals: [new iam.ServicePrincipal(`logs.${stack.region}.${domainSuffix(stack)}`)],
        actions: ['kms:Encrypt*', 'kms:Decrypt*', 'kms:ReEncrypt*', 'kms:GenerateDataKey*', 'kms:Describe*'],
        resources: ['*'],
        conditions: {
          ArnLike: {
            'kms:EncryptionContext:aws:logs:arn': stack.formatArn({ service: 'logs', resource: 'log-group', resourceName: '*', arnFormat: ArnFormat.COLON_RESOURCE_NAME }),
          },
        },
      }));
    }
    const logGroup = new logs.LogGroup(this, 'KernelAttestationLog', {
      retention: props.logRetention ?? logs.RetentionDays.ONE_YEAR,
      removalPolicy: props.logRemovalPolicy ?? RemovalPolicy.RETAIN,
      encryptionKey: props.logEncryptionKey,
    });
    // One filter per dimension set the runtime publishes with, so per-instance and per-image views both work.
    const fields: Record<string, string> = { [DIMENSIONS.instanceId]: '$.instanceId', [DIMENSIONS.enclaveImage]: '$.enclaveImage' };
    RUNTIME_DIMENSION_SETS.forEach((dimensionSet) => {
      logGroup.addMetricFilter(`KernelAttestationRecordsBy${dimensionSet.join('')}`, {
        filterPattern: logs.FilterPattern.exists('$.codeSha384'),
        metricNamespace: NAMESPACE,
        metricName: KERNEL_ATTESTATION_RECORDS.name,
        metricValue: '1',
        unit: cloudwatch.Unit.COUNT,
        dimensions: Object.fromEntries(dimensionSet.map((name) => [name, fields[name]])),
      });
    });
    return logGroup;
  }

  private dashboardRows(perInstance: boolean): cloudwatch.IWidget[][] {
    const graph = (title: string, left: cloudwatch.IMetric[], right: cloudwatch.IMetric[] = []) =>
      new cloudwatch.GraphWidget({ title, left, right, width: 8, height: 6, period: this.period });
    const rows: cloudwatch.IWidget[][] = [
      [
        graph('Encrypted throughput (bytes)', [this.metricEncryptedBytesIn(), this.metricEncryptedBytesOut()]),
        graph('Enclave-to-host latency (ms)', [
          this.metricEnclaveToHostLatency({ statistic: 'p50', label: 'p50' }),
          this.metricEnclaveToHostLatency({ statistic: 'p99', label: 'p99' }),
        ]),
        graph('GPU utilization (%)', [this.metricGpuUtilization()]),
      ],
      [
        graph('Kernel launches and attestation records', [this.metricKernelLaunches(), this.metricKernelAttestationRecords()]),
        graph('Attestation failures and replays', [this.metricAttestationFailures(), this.metricReplayRejected()]),
        graph('Queue depth', [this.metricQueueDepth()]),
      ],
    ];
    if (perInstance) {
      // The CloudWatch agent's metrics carry the InstanceId dimension only (aggregation_dimensions).
      const agent = (metricName: string) => new cloudwatch.Metric({
        namespace: NAMESPACE, metricName, dimensionsMap: { [DIMENSIONS.instanceId]: this.dimensions[DIMENSIONS.instanceId] }, statistic: 'Average', period: this.period,
      });
      const gpu = this.gpuMeasurements
        .filter((m) => m === NvidiaGpuMeasurement.UTILIZATION_GPU || m === NvidiaGpuMeasurement.UTILIZATION_MEMORY)
        .map((m) => agent(agentGpuMetricName(m)));
      rows.push([
        ...(gpu.length > 0 ? [graph('GPU, as nvidia-smi reports it (%)', gpu)] : []),
        graph('Host memory and root disk used (%)', [agent(AGENT_HOST_METRICS.memoryUsedPercent), agent(AGENT_HOST_METRICS.diskUsedPercent)]),
      ]);
    }
    rows.push([new cloudwatch.AlarmStatusWidget({ title: 'Alarms', alarms: this.alarms(), width: 24, height: 3 })]);
    return rows;
  }
}

/** amazonaws.com, or amazonaws.com.cn in China: the region's where it is known at synth time, else the deployment's. */
function domainSuffix(stack: Stack): string {
  return (Token.isUnresolved(stack.region) ? undefined : RegionInfo.get(stack.region).domainSuffix) ?? stack.urlSuffix;
}

/** The CloudWatch agent's bounds on metrics_collection_interval: it refuses its configuration outside them. */
const AGENT_INTERVAL_SECONDS = { min: 1, max: 172_800 };

function checkAgentCollectionInterval(scope: Construct, interval: Duration): Duration {
  if (interval.isUnresolved()) {
    throw new Error(`${scope.node.path}: agentCollectionInterval must be known at synth time (it is written into the CloudWatch agent's configuration)`);
  }
  const seconds = interval.toMilliseconds() / 1000;
  if (!Number.isInteger(seconds) || seconds < AGENT_INTERVAL_SECONDS.min || seconds > AGENT_INTERVAL_SECONDS.max) {
    throw new Error(
      `${scope.node.path}: agentCollectionInterval must be whole seconds from ${AGENT_INTERVAL_SECONDS.min} to ${AGENT_INTERVAL_SECONDS.max} ` +
      `(the CloudWatch agent refuses its configuration otherwise), got ${interval.toHumanString()}. Use for example Duration.seconds(60).`,
    );
  }
  return interval;
}

function checkGpuMeasurements(scope: Construct, measurements: NvidiaGpuMeasurement[]): NvidiaGpuMeasurement[] {
  const unknown = unknownGpuMeasurements(measurements);
  if (unknown.length > 0) {
    throw new Error(
      `${scope.node.path}: gpuMeasurements has ${unknown.map((m) => `'${m}'`).join(', ')}, which the CloudWatch agent does not accept ` +
      '(it would drop the whole nvidia_gpu section). Use NvidiaGpuMeasurement values.',
    );
  }
  if (measurements.length === 0 || new Set(measurements).size !== measurements.length) {
    throw new Error(`${scope.node.path}: gpuMeasurements must list at least one measurement, each once`);
  }
  return measurements;
}
