/**
 * `sgs.json`: what SGS listens on, which enclaves it admits, how it shares the GPU, and where
 * it reports. Parsed strictly: an unknown field is refused (a misspelt limit must not silently
 * fall back to its default), and every error names the field, the value and what is allowed.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { KERNEL_ATTESTATION_LOG_PATH } from '../../../../lib/observability/metric-catalogue';
import { MAX_FRAME_BYTES } from '../abe/limits';
import { RootOption } from '../attestation/root';
import { RuntimeError } from '../errors';
import { Address, parseAddress } from '../protocol/transport';
import { ConfigReader, SgsConfigError, objectAt } from './config-reader';

export { SgsConfigError } from './config-reader';

export const DEFAULT_PARTITION = 'default';

/** One share of the GPU. Sessions of enclaves whose allowlist entry names it draw on it. */
export interface PartitionConfig {
  /** Share of the GPU, 0 < share <= 1: MPS active-thread percentage, and the share of maxInFlight. */
  readonly gpuShare: number;
  /** Most ciphertext one session may have queued (and the MPS pinned device-memory limit). */
  readonly memoryCapBytes: number;
  /** Most operations one session may have queued before it is told BUSY. */
  readonly queueBound: number;
}

/** An enclave image SGS admits: PCR0-2 in lower-case hex, and the partition its sessions use. */
export interface AllowedImage {
  readonly pcr0: string;
  readonly pcr1: string;
  readonly pcr2: string;
  readonly partition: string;
}

export interface MetricsConfig {
  readonly enabled: boolean;
  /** The CloudWatch region; default the SDK's (AWS_REGION, the instance's region). */
  readonly region?: string;
  /** The InstanceId dimension; default 'local' (the instance renders its id into sgs.json). */
  readonly instanceId: string;
  readonly flushIntervalMs: number;
  /** Most metric data held while CloudWatch is unreachable; the oldest are dropped beyond it. */
  readonly maxBufferedData: number;
}

export interface SgsConfig {
  /** Where enclaves (EGPs) connect: vsock in production, unix or tcp locally. */
  readonly enclaveListen: Address;
  /** The execution context's socket. */
  readonly context: Address;
  /** The attestation root SGS pins: the AWS Nitro root, or a PEM (the simulated NSM's in local mode). */
  readonly root: RootOption;
  /** 'aws' or the PEM's path, for the summary. */
  readonly rootSource: string;
  readonly allowlist: readonly AllowedImage[];
  readonly partitions: ReadonlyMap<string, PartitionConfig>;
  /** Most operations in flight at the context, all sessions together. */
  readonly maxInFlight: number;
  /** How long an operation may take once dispatched before the session ends with TIMEOUT. */
  readonly deadlineMs: number;
  /** How long a session's set-up (open to ready) may take before it ends with TIMEOUT. */
  readonly handshakeTimeoutMs: number;
  /** How long SIGTERM waits for queued and in-flight operations. */
  readonly drainTimeoutMs: number;
  /** Most sessions at once; more connections are told BUSY and closed. */
  readonly maxSessions: number;
  /** Most ciphertext SGS holds queued, all sessions together; beyond it operations are told BUSY. */
  readonly maxBufferedBytes: number;
  /** The health endpoint (HTTP), if any. */
  readonly health?: Address;
  readonly metrics: MetricsConfig;
  /** The kernel-attestation log (JSON lines) SGS appends to. */
  readonly kernelAttestationLog: string;
}

const MAX_CONFIG_FILE_BYTES = 1024 * 1024;
const MAX_ALLOWLIST = 256;
const MAX_PARTITIONS = 64;
const PCR_HEX = /^[0-9a-fA-F]{96}$/;
const ZERO_PCR = '0'.repeat(96);
const HOUR_MS = 3_600_000;

const DEFAULT_PARTITION_CONFIG: PartitionConfig = { gpuShare: 1, memoryCapBytes: 1024 * 1024 * 1024, queueBound: 64 };

/** Reads and validates an sgs.json file; relative paths in it are relative to the file. */
export function loadSgsConfig(path: string): SgsConfig {
  let text: string;
  try {
    const size = statSync(path).size;
    if (size > MAX_CONFIG_FILE_BYTES) throw new SgsConfigError(path, `is ${size} bytes; an sgs.json is at most ${MAX_CONFIG_FILE_BYTES}`);
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if (error instanceof SgsConfigError) throw error;
    throw new SgsConfigError(path, `cannot be read: ${(error as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new SgsConfigError(path, `is not JSON: ${(error as Error).message}`);
  }
  return parseSgsConfig(json, dirname(resolve(path)));
}

/** Validates a parsed sgs.json; `baseDir` resolves relative paths (root PEM, log file). */
export function parseSgsConfig(json: unknown, baseDir: string): SgsConfig {
  const top = new ConfigReader(objectAt(json, '(sgs.json)'), '');
  const enclaveListen = address(top, 'enclaveListen', ['unix', 'tcp', 'vsock']);
  const context = address(top, 'context', ['unix', 'tcp']);
  const rootSource = top.string('root', { required: true, description: "'aws' or the path of a PEM root certificate" })!;
  const root = readRoot(rootSource, baseDir);
  const partitions = readPartitions(top);
  const allowlist = readAllowlist(top, partitions, root === 'aws');
  const metrics = readMetrics(top);
  const config: SgsConfig = {
    enclaveListen,
    context,
    root,
    rootSource,
    allowlist,
    partitions,
    maxInFlight: top.integer('maxInFlight', { min: 1, max: 4096, fallback: 8 }),
    deadlineMs: top.integer('deadlineMs', { min: 1, max: HOUR_MS, fallback: 30_000 }),
    handshakeTimeoutMs: top.integer('handshakeTimeoutMs', { min: 1, max: HOUR_MS, fallback: 30_000 }),
    drainTimeoutMs: top.integer('drainTimeoutMs', { min: 0, max: HOUR_MS, fallback: 30_000 }),
    maxSessions: top.integer('maxSessions', { min: 1, max: 65_536, fallback: 256 }),
    maxBufferedBytes: top.integer('maxBufferedBytes', { min: MAX_FRAME_BYTES + 4, max: 2 ** 46, fallback: 4 * 1024 ** 3 }),
    health: top.has('health') ? address(top, 'health', ['tcp']) : undefined,
    metrics,
    kernelAttestationLog: resolve(baseDir, top.string('kernelAttestationLog', { fallback: KERNEL_ATTESTATION_LOG_PATH })!),
  };
  top.expectNoOthers();
  return config;
}

function address(reader: ConfigReader, name: string, kinds: readonly Address['kind'][]): Address {
  const text = reader.string(name, { required: true, description: kinds.map((k) => `${k}:...`).join(' or ') })!;
  let parsed: Address;
  try {
    parsed = parseAddress(text);
  } catch (error) {
    throw new SgsConfigError(reader.path(name), (error as RuntimeError).reason);
  }
  if (!kinds.includes(parsed.kind)) {
    throw new SgsConfigError(reader.path(name), `'${text}' is a ${parsed.kind} address; use ${kinds.map((k) => `${k}:...`).join(' or ')}`);
  }
  return parsed;
}

function readRoot(source: string, baseDir: string): RootOption {
  if (source === 'aws') return 'aws';
  const path = resolve(baseDir, source);
  try {
    return new X509Certificate(readFileSync(path));
  } catch (error) {
    throw new SgsConfigError('root', `'${source}' is neither 'aws' nor a readable PEM certificate (${(error as Error).message})`);
  }
}

function readPartitions(top: ConfigReader): ReadonlyMap<string, PartitionConfig> {
  const partitions = new Map<string, PartitionConfig>();
  if (!top.has('partitions')) {
    partitions.set(DEFAULT_PARTITION, DEFAULT_PARTITION_CONFIG);
    return partitions;
  }
  const object = top.object('partitions');
  const names = Object.keys(object);
  if (names.length === 0 || names.length > MAX_PARTITIONS) {
    throw new SgsConfigError('partitions', `must name 1 to ${MAX_PARTITIONS} partitions, got ${names.length}`);
  }
  for (const name of names) {
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name)) {
      throw new SgsConfigError(`partitions.${name}`, 'a partition name is 1 to 64 letters, digits, _ . or -');
    }
    const reader = new ConfigReader(objectAt(object[name], `partitions.${name}`), `partitions.${name}`);
    partitions.set(name, {
      gpuShare: reader.number('gpuShare', { minExclusive: 0, max: 1, required: true }),
      // One full frame must fit, or an operation of a single large chunk could never be queued.
      memoryCapBytes: reader.integer('memoryCapBytes', { min: MAX_FRAME_BYTES + 4, max: 2 ** 46, required: true }),
      queueBound: reader.integer('queueBound', { min: 1, max: 65_536, required: true }),
    });
    reader.expectNoOthers();
  }
  return partitions;
}

function readAllowlist(top: ConfigReader, partitions: ReadonlyMap<string, PartitionConfig>, awsRoot: boolean): AllowedImage[] {
  const entries = top.array('allowlist');
  if (entries.length === 0 || entries.length > MAX_ALLOWLIST) {
    throw new SgsConfigError('allowlist', `must list 1 to ${MAX_ALLOWLIST} images (PCR0-2), got ${entries.length}`);
  }
  return entries.map((entry, index) => {
    const path = `allowlist[${index}]`;
    const reader = new ConfigReader(objectAt(entry, path), path);
    const pcr = (name: string): string => {
      const value = reader.string(name, { required: true, description: '96 hex characters (SHA-384)' })!;
      if (!PCR_HEX.test(value)) throw new SgsConfigError(reader.path(name), `must be 96 hex characters (a SHA-384), got '${value.slice(0, 100)}'`);
      return value.toLowerCase();
    };
    const image = { pcr0: pcr('pcr0'), pcr1: pcr('pcr1'), pcr2: pcr('pcr2'), partition: reader.string('partition', { fallback: DEFAULT_PARTITION })! };
    if (!partitions.has(image.partition)) {
      throw new SgsConfigError(reader.path('partition'), `names the partition '${image.partition}', which 'partitions' does not define (${[...partitions.keys()].join(', ')})`);
    }
    // Under the AWS root, all-zero PCRs are an enclave in debug mode, whose memory the host can read.
    if (awsRoot && image.pcr0 === ZERO_PCR) {
      throw new SgsConfigError(reader.path('pcr0'), 'is all zeros: that admits debug-mode enclaves, whose memory the parent can read; allow the image\'s real PCRs');
    }
    reader.expectNoOthers();
    return image;
  });
}

function readMetrics(top: ConfigReader): MetricsConfig {
  if (!top.has('metrics')) {
    return { enabled: false, instanceId: 'local', flushIntervalMs: 60_000, maxBufferedData: 10_000 };
  }
  const reader = new ConfigReader(top.object('metrics'), 'metrics');
  const metrics: MetricsConfig = {
    enabled: reader.boolean('enabled', { required: true }),
    region: reader.string('region', { description: 'an AWS region, for example us-east-1' }),
    instanceId: reader.string('instanceId', { fallback: 'local' })!,
    flushIntervalMs: reader.integer('flushIntervalMs', { min: 100, max: HOUR_MS, fallback: 60_000 }),
    maxBufferedData: reader.integer('maxBufferedData', { min: 1, max: 1_000_000, fallback: 10_000 }),
  };
  if (metrics.region !== undefined && !/^[a-z]{2}(-[a-z]+)+-\d$/.test(metrics.region)) {
    throw new SgsConfigError('metrics.region', `'${metrics.region}' is not an AWS region name (for example us-east-1)`);
  }
  if (!/^[A-Za-z0-9_.:-]{1,255}$/.test(metrics.instanceId)) {
    throw new SgsConfigError('metrics.instanceId', `'${metrics.instanceId.slice(0, 300)}' is not a dimension value of 1 to 255 plain characters (an instance id, i-...)`);
  }
  reader.expectNoOthers();
  return metrics;
}
