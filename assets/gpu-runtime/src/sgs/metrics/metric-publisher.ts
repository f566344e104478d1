/**
 * Sends metric data to CloudWatch with PutMetricData, in batches within its limits, from a
 * bounded buffer. When CloudWatch is unreachable (no route, throttled, no credentials) the
 * data stay buffered and go with the next flush; beyond `maxBufferedData` the oldest are
 * dropped and counted, so an outage costs old data points, never SGS's memory. The batch of a
 * call in flight is out of the buffer (at most one batch more than the bound) and goes back to
 * its front only if the call fails, within the bound: every datum enqueued is counted once, as
 * sent, dropped or buffered.
 *
 * Data CloudWatch would refuse are not retried: data outside its timestamp window (more than
 * two weeks old, as after a long outage, or more than two hours ahead) are dropped before each
 * batch, and a batch refused as invalid (InvalidParameterValue, InvalidParameterCombination,
 * MissingParameter) is dropped, since sending it again would only block the data behind it.
 * Both are counted in `dropped`.
 */
import { MetricDatum, PutMetricDataCommand } from '@aws-sdk/client-cloudwatch';
import { NAMESPACE } from '../../../../../lib/observability/metric-catalogue';
import { MAX_DATA_PER_CALL } from './metric-data';

/** What the publisher needs of a CloudWatchClient (tests mock the client itself). */
export interface CloudWatchSender {
  send(command: PutMetricDataCommand, options?: { abortSignal?: AbortSignal }): Promise<unknown>;
}

/**
 * A PutMetricData request is at most 1 MB. The size of a datum is estimated from its JSON,
 * times a margin for the wire protocol's more verbose field names, and batches stay under
 * this estimate: a batch of 1000 value data is about 200 KB, so the limit only bites for
 * distributions with many values.
 */
const MAX_ESTIMATED_BATCH_BYTES = 300 * 1024;
const PROTOCOL_MARGIN = 3;

/**
 * CloudWatch refuses a whole request if one Timestamp is more than two weeks old or more than
 * two hours ahead. Data are dropped a minute inside that window, so that a datum accepted here
 * is not refused there because of the call's duration or the clocks' difference.
 */
const MAX_AGE_MS = 14 * 24 * 3_600_000 - 60_000;
const MAX_AHEAD_MS = 2 * 3_600_000 - 60_000;

/** PutMetricData errors for a request CloudWatch refuses as such: the SDK's names and the wire's codes. */
const INVALID_REQUEST = new Set([
  'InvalidParameterValueException', 'InvalidParameterValue',
  'InvalidParameterCombinationException', 'InvalidParameterCombination',
  'MissingRequiredParameterException', 'MissingParameter', 'MissingRequiredParameter',
]);

export interface PublisherOptions {
  readonly maxBufferedData: number;
  /** Longest one PutMetricData call may take before it is abandoned (and retried later). */
  readonly callTimeoutMs?: number;
  readonly log?: (line: string) => void;
  /** The clock that data timestamps are checked against (Date.now). */
  readonly now?: () => number;
}

export class MetricPublisher {
  private buffer: MetricDatum[] = [];
  /** The batch of the PutMetricData call in flight, out of `buffer`. */
  private sending: readonly MetricDatum[] = [];
  private droppedCount = 0;
  private sentCount = 0;
  private inFlight: Promise<boolean> | undefined;
  /** The name of the last error of PutMetricData, until a call succeeds: each change is logged once. */
  private lastError: string | undefined;

  constructor(private readonly client: CloudWatchSender, private readonly options: PublisherOptions) {}

  /** Data neither sent nor dropped yet, those of a call in flight included. */
  get buffered(): number {
    return this.buffer.length + this.sending.length;
  }

  /** Data dropped: oldest first because the buffer was full, or because CloudWatch would refuse (or refused) them. */
  get dropped(): number {
    return this.droppedCount;
  }

  get sent(): number {
    return this.sentCount;
  }

  enqueue(data: readonly MetricDatum[]): void {
    this.buffer.push(...data);
    this.bound();
  }

  /** Drops the oldest data beyond `maxBufferedData`. */
  private bound(): void {
    const excess = this.buffer.length - this.options.maxBufferedData;
    if (excess > 0) {
      this.buffer.splice(0, excess);
      this.droppedCount += excess;
      this.options.log?.(`sgs: metrics buffer full (${this.options.maxBufferedData}): dropped the ${excess} oldest data, ${this.droppedCount} in all`);
    }
  }

  /**
   * Sends everything buffered, batch after batch; stops at the first failure and keeps the
   * rest, except for a batch refused as invalid, which is dropped. Resolves true when the
   * buffer was emptied. Concurrent calls share one run.
   */
  flush(): Promise<boolean> {
    this.inFlight ??= this.sendAll().finally(() => { this.inFlight = undefined; });
    return this.inFlight;
  }

  private async sendAll(): Promise<boolean> {
    // Once per flush: what is enqueued while a call is under way is timestamped now.
    this.dropOutsideWindow();
    while (this.buffer.length > 0) {
      const batch = this.buffer.splice(0, nextBatchSize(this.buffer));
      this.sending = batch;
      try {
        const abortSignal = AbortSignal.timeout(this.options.callTimeoutMs ?? 10_000);
        await this.client.send(new PutMetricDataCommand({ Namespace: NAMESPACE, MetricData: batch }), { abortSignal });
      } catch (error) {
        this.sending = [];
        const { name, message } = error as Error;
        const changed = name !== this.lastError;
        this.lastError = name;
        if (INVALID_REQUEST.has(name)) {
          this.droppedCount += batch.length;
          if (changed) this.options.log?.(`sgs: PutMetricData refused the request (${name}: ${message}); dropped ${batch.length} data, ${this.droppedCount} in all`);
          continue;
        }
        // Back in front of what was enqueued meanwhile, the oldest dropped beyond the bound.
        this.buffer.unshift(...batch);
        this.bound();
        if (changed) this.options.log?.(`sgs: PutMetricData failed (${name}: ${message}); ${this.buffer.length} data kept for the next flush`);
        return false;
      }
      this.sending = [];
      if (this.lastError !== undefined) this.options.log?.('sgs: PutMetricData works again');
      this.lastError = undefined;
      this.sentCount += batch.length;
    }
    return true;
  }

  /** Drops the buffered data CloudWatch would refuse for their Timestamp. */
  private dropOutsideWindow(): void {
    const now = (this.options.now ?? Date.now)();
    const kept = this.buffer.filter((datum) => {
      const at = datum.Timestamp?.getTime();
      return at === undefined || (at >= now - MAX_AGE_MS && at <= now + MAX_AHEAD_MS);
    });
    const outside = this.buffer.length - kept.length;
    if (outside > 0) {
      this.buffer = kept;
      this.droppedCount += outside;
      this.options.log?.(`sgs: dropped ${outside} data outside CloudWatch's timestamp window (more than 14 days old or 2 hours ahead), ${this.droppedCount} in all`);
    }
  }
}

/** How many data from the front of `buffer` fit in one PutMetricData call. */
function nextBatchSize(buffer: readonly MetricDatum[]): number {
  let bytes = 0;
  let count = 0;
  while (count < buffer.length && count < MAX_DATA_PER_CALL) {
    const size = JSON.stringify(buffer[count]).length * PROTOCOL_MARGIN;
    if (count > 0 && bytes + size > MAX_ESTIMATED_BATCH_BYTES) break;
    bytes += size;
    count++;
  }
  return count;
}
