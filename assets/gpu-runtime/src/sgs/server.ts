/**
 * The Secure GPU Scheduler: listens on the enclave link, runs one SgsSession per EGP
 * connection, shares the context fairly between them, reports health and metrics, and
 * drains on request (SIGTERM in `egpu sgs`).
 */
import { lstatSync, unlinkSync } from 'node:fs';
import type { AddressInfo, Server, Socket } from 'node:net';
import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { enclaveImageDimension } from '../../../../lib/observability/metric-catalogue';
import { encodeControl } from '../protocol/control';
import { RefusedConnections } from '../protocol/refused-connections';
import { formatAddress, listen } from '../protocol/transport';
import { WireError } from '../protocol/wire-error';
import { CiphertextBudget } from './ciphertext-budget';
import { SgsConfig } from './config';
import { FairScheduler } from './fair-scheduler';
import { HealthEndpoint, HealthStatus, startHealthServer } from './health-server';
import { KernelAttestationLog } from './kernel-attestation-log';
import { CloudWatchSender, MetricPublisher } from './metrics/metric-publisher';
import { MetricRecorder } from './metrics/metric-recorder';
import { MetricsReporter } from './metrics/metrics-reporter';
import { SgsSession } from './session';
import { SessionServices } from './session-services';

export interface SgsServerOptions {
  /** Where PutMetricData goes; default a CloudWatchClient for the configured region (when metrics are enabled). */
  readonly cloudWatch?: CloudWatchSender;
  /** Operator log lines; default stderr. */
  readonly log?: (line: string) => void;
}

/** The longest the final metrics flush may take when SGS stops. */
const FINAL_FLUSH_TIMEOUT_MS = 10_000;
const SESSION_LIMIT_RETRY_MS = 1_000;

export class SgsServer {
  /** Starts listening; throws (and releases what it opened) when an address or the kernel log is unusable. */
  static async start(config: SgsConfig, options: SgsServerOptions = {}): Promise<SgsServer> {
    const log = options.log ?? ((line: string) => { process.stderr.write(`${line}\n`); });
    const kernelLog = KernelAttestationLog.open(config.kernelAttestationLog, log);
    let ownedClient: CloudWatchClient | undefined;
    let reporter: MetricsReporter | undefined;
    let publisher: MetricPublisher | undefined;
    const recorder = new MetricRecorder(Date.now, servedImages(config));
    if (config.metrics.enabled) {
      const client = options.cloudWatch ?? (ownedClient = new CloudWatchClient({
        region: config.metrics.region,
        maxAttempts: 2,
        requestHandler: { connectionTimeout: 3_000, requestTimeout: 10_000, throwOnRequestTimeout: true },
      }));
      publisher = new MetricPublisher(client, { maxBufferedData: config.metrics.maxBufferedData, log });
      reporter = new MetricsReporter(recorder, publisher, config.metrics.instanceId, config.metrics.flushIntervalMs);
    }
    const server = new SgsServer(config, log, kernelLog, recorder, reporter, publisher, ownedClient);
    try {
      await server.listen();
    } catch (error) {
      await server.release();
      throw error;
    }
    reporter?.start();
    return server;
  }

  private readonly sessions = new Set<SgsSession>();
  /** Connections refused at maxSessions while their BUSY record is written. */
  private readonly refused = new RefusedConnections();
  private reportListenerFailure!: (error: Error) => void;
  /**
   * Resolves if the enclave link stops accepting for good (its listener failed and closed):
   * no new session can start, so the caller should drain and exit for its supervisor to
   * restart SGS. A failed accept after which the listener goes on is only logged.
   */
  readonly listenerFailure = new Promise<Error>((resolve) => { this.reportListenerFailure = resolve; });
  private readonly services: SessionServices;
  private enclaveServer: Server | undefined;
  private health: HealthEndpoint | undefined;
  private draining: Promise<void> | undefined;
  private onEmpty: (() => void) | undefined;
  private boundAddress = '';

  private constructor(
    readonly config: SgsConfig,
    private readonly log: (line: string) => void,
    private readonly kernelLog: KernelAttestationLog,
    recorder: MetricRecorder,
    private readonly reporter: MetricsReporter | undefined,
    private readonly publisher: MetricPublisher | undefined,
    private readonly ownedClient: CloudWatchClient | undefined,
  ) {
    const slots = new Map([...config.partitions].map(([name, partition]) => [name, FairScheduler.slotsFor(partition.gpuShare, config.maxInFlight)]));
    const scheduler = new FairScheduler(config.maxInFlight, slots);
    this.services = {
      config,
      scheduler,
      budget: new CiphertextBudget(config.maxBufferedBytes),
      metrics: recorder,
      kernelLog,
      servedImages: servedImages(config),
      log,
      sessionClosed: (session) => {
        this.sessions.delete(session);
        if (this.sessions.size === 0) this.onEmpty?.();
      },
    };
  }

  /** The enclave link's address, with the port actually bound for tcp:...:0. */
  get enclaveAddress(): string {
    return this.boundAddress;
  }

  /** The health endpoint's address (tcp:host:port), if configured. */
  get healthAddress(): string | undefined {
    return this.health?.address;
  }

  /** What GET /health reports. */
  stats(): HealthStatus {
    let queued = 0;
    for (const session of this.sessions) queued += session.queuedOperations;
    return {
      status: this.draining ? 'draining' : 'ok',
      sessions: this.sessions.size,
      queued,
      inFlight: this.services.scheduler.inFlight,
      bufferedBytes: this.services.budget.bytes,
      metricsDropped: this.publisher?.dropped ?? 0,
    };
  }

  /** The metrics of the interval so far, sent now (tests; the reporter's timer does this otherwise). */
  flushMetrics(): Promise<boolean> {
    return this.reporter ? this.reporter.flush() : Promise.resolve(true);
  }

  /**
   * Stops accepting sessions, lets ready sessions finish their queued and in-flight
   * operations for up to `timeoutMs`, ends what remains (INTERNAL), flushes metrics and the
   * kernel-attestation log, and closes the health endpoint. Idempotent.
   */
  drain(timeoutMs = this.config.drainTimeoutMs): Promise<void> {
    this.draining ??= this.runDrain(timeoutMs);
    return this.draining;
  }

  /** Ends everything now (a drain with no grace period). */
  close(): Promise<void> {
    return this.drain(0);
  }

  private async runDrain(timeoutMs: number): Promise<void> {
    this.log(`sgs: draining ${this.sessions.size} session(s), up to ${timeoutMs} ms`);
    const stopped = new Promise<void>((resolve) => this.enclaveServer ? this.enclaveServer.close(() => resolve()) : resolve());
    const empty = new Promise<void>((resolve) => {
      this.onEmpty = resolve;
      if (this.sessions.size === 0) resolve();
    });
    this.refused.destroyAll();
    for (const session of [...this.sessions]) session.drain();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([empty, new Promise<void>((resolve) => { timer = setTimeout(resolve, timeoutMs); })]);
    clearTimeout(timer);
    for (const session of [...this.sessions]) session.end(new WireError('INTERNAL', 'SGS shut down before the session finished'));
    await stopped;
    await this.release();
    this.log('sgs: stopped');
  }

  /** Flushes and closes what start() opened. */
  private async release(): Promise<void> {
    if (this.reporter) {
      const flushed = await this.reporter.stop(FINAL_FLUSH_TIMEOUT_MS);
      if (!flushed) this.log(`sgs: the final metrics flush did not complete; ${this.publisher!.buffered} data not sent`);
    }
    await this.kernelLog.close();
    await this.health?.close();
    this.ownedClient?.destroy();
  }

  private async listen(): Promise<void> {
    const { enclaveListen, health } = this.config;
    if (enclaveListen.kind === 'unix') removeStaleSocket(enclaveListen.path);
    const server = this.enclaveServer = await listen(enclaveListen, (socket) => this.accept(socket));
    server.on('error', (error: NodeJS.ErrnoException) => {
      if (server.listening) {
        this.log(`sgs: accepting an enclave connection failed (${error.code ?? error.message}); still listening`);
        return;
      }
      this.log(`sgs: the enclave link ${this.boundAddress} stopped accepting: ${error.message}`);
      this.reportListenerFailure(error);
    });
    const bound = this.enclaveServer.address();
    this.boundAddress = enclaveListen.kind === 'tcp' && bound !== null && typeof bound === 'object'
      ? formatAddress({ ...enclaveListen, port: (bound as AddressInfo).port })
      : formatAddress(enclaveListen);
    if (health?.kind === 'tcp') this.health = await startHealthServer(health, () => this.stats());
  }

  private accept(socket: Socket): void {
    if (this.draining) {
      socket.destroy();
      return;
    }
    if (this.sessions.size >= this.config.maxSessions) {
      this.refuse(socket);
      return;
    }
    this.sessions.add(new SgsSession(socket, this.services));
  }

  /** BUSY, as for a full queue: the EGP retries after retryAfterMs, with a new connection. */
  private refuse(socket: Socket): void {
    this.refused.refuse(socket, encodeControl({ t: 'error', code: 'BUSY', reason: `SGS serves ${this.config.maxSessions} sessions, its limit`, retryAfterMs: SESSION_LIMIT_RETRY_MS }));
  }
}

/** The EnclaveImage dimensions of the images SGS serves (its allowlist). */
function servedImages(config: SgsConfig): string[] {
  return [...new Set(config.allowlist.map((image) => enclaveImageDimension(image.pcr0)))];
}

/** A socket file left by an SGS that did not stop cleanly would make listen fail; anything else is left alone. */
function removeStaleSocket(path: string): void {
  try {
    if (lstatSync(path).isSocket()) unlinkSync(path);
  } catch {
    // absent: nothing to remove
  }
}
