/**
 * Accumulates the runtime metrics per enclave image between two flushes, then turns them
 * into CloudWatch data. Memory is bounded: one entry per image (images come from the
 * allowlist), and latencies are kept as value -> count with values rounded to three
 * significant digits (0.5% at most off, and at most ~900 distinct values per decade).
 */
import type { MetricDatum } from '@aws-sdk/client-cloudwatch';
import { RUNTIME_METRICS } from '../../../../../lib/observability/metric-catalogue';
import type { ComputeDevice } from '../../kernels/kernel';
import { distributionData, runtimeDimensions, valueData } from './metric-data';

interface ImageInterval {
  bytesIn: number;
  bytesOut: number;
  launches: number;
  attestationFailures: number;
  replays: number;
  /** Kernel time on the GPU (kernels that ran on the CPU are not GPU utilization). */
  gpuComputeUs: number;
  latencies: Map<number, number>;
  /** Operations queued now (across this image's sessions) and the most during the interval. */
  queued: number;
  queuedMax: number;
  liveSessions: number;
}

export class MetricRecorder {
  private readonly images = new Map<string, ImageInterval>();
  private intervalStart: number;

  private readonly served: ReadonlySet<string>;

  /**
   * @param servedImages the images SGS serves (its allowlist): their QueueDepth and
   *   GPUUtilization are reported every interval while SGS runs, 0 when idle, so that a
   *   fleet's target tracking sees an idle fleet as idle (no data would leave its alarms
   *   without data, and the fleet would not scale in)
   */
  constructor(private readonly now: () => number = Date.now, servedImages: readonly string[] = []) {
    this.intervalStart = now();
    this.served = new Set(servedImages);
  }

  sessionOpened(image: string): void {
    this.image(image).liveSessions++;
  }

  sessionClosed(image: string): void {
    this.image(image).liveSessions--;
  }

  bytesIn(image: string, bytes: number): void {
    this.image(image).bytesIn += bytes;
  }

  bytesOut(image: string, bytes: number): void {
    this.image(image).bytesOut += bytes;
  }

  /**
   * An operation completed: its latency at SGS, the compute time the context reported and
   * the device that time was spent on (undefined for operations that ran no kernel).
   */
  operation(image: string, latencyMs: number, computeUs: number, device: ComputeDevice | undefined): void {
    const entry = this.image(image);
    const value = Number(latencyMs.toPrecision(3));
    entry.latencies.set(value, (entry.latencies.get(value) ?? 0) + 1);
    if (device === 'gpu') entry.gpuComputeUs += computeUs;
  }

  launch(image: string): void {
    this.image(image).launches++;
  }

  attestationFailure(image: string): void {
    this.image(image).attestationFailures++;
  }

  replay(image: string): void {
    this.image(image).replays++;
  }

  /** `delta` operations joined (+) or left (-) the image's queues. */
  queued(image: string, delta: number): void {
    const entry = this.image(image);
    entry.queued += delta;
    entry.queuedMax = Math.max(entry.queuedMax, entry.queued);
  }

  /**
   * The interval's data, timestamped now, and a new interval. Counters are sent when not
   * zero; QueueDepth and GPUUtilization for every served image and every image with a
   * session or activity, so an idle GPU shows as 0 rather than as a gap.
   */
  collect(instanceId: string): MetricDatum[] {
    for (const image of this.served) this.image(image);
    const end = this.now();
    const wallUs = (end - this.intervalStart) * 1000;
    this.intervalStart = end;
    const timestamp = new Date(end);
    const data: MetricDatum[] = [];
    for (const [image, entry] of this.images) {
      const dimensions = runtimeDimensions(instanceId, image);
      const counter = (metric: (typeof RUNTIME_METRICS)[keyof typeof RUNTIME_METRICS], value: number) => {
        if (value > 0) data.push(...valueData(metric, value, dimensions, timestamp));
      };
      counter(RUNTIME_METRICS.encryptedBytesIn, entry.bytesIn);
      counter(RUNTIME_METRICS.encryptedBytesOut, entry.bytesOut);
      counter(RUNTIME_METRICS.kernelLaunches, entry.launches);
      counter(RUNTIME_METRICS.attestationFailures, entry.attestationFailures);
      counter(RUNTIME_METRICS.replayRejected, entry.replays);
      if (entry.latencies.size > 0) data.push(...distributionData(RUNTIME_METRICS.enclaveToHostLatency, entry.latencies, dimensions, timestamp));
      const active = this.served.has(image) || entry.liveSessions > 0 || entry.latencies.size > 0 || entry.queuedMax > 0;
      if (active) {
        data.push(...valueData(RUNTIME_METRICS.queueDepth, entry.queuedMax, dimensions, timestamp));
        if (wallUs > 0) {
          // Compute time over wall time; sessions computing concurrently can exceed the wall clock.
          const percent = Math.min(100, (entry.gpuComputeUs / wallUs) * 100);
          data.push(...valueData(RUNTIME_METRICS.gpuUtilization, Number(percent.toPrecision(4)), dimensions, timestamp));
        }
      }
      if (entry.liveSessions <= 0 && entry.queued <= 0 && !this.served.has(image)) this.images.delete(image);
      else this.images.set(image, { ...emptyInterval(), liveSessions: entry.liveSessions, queued: entry.queued, queuedMax: entry.queued });
    }
    return data;
  }

  private image(image: string): ImageInterval {
    let entry = this.images.get(image);
    if (entry === undefined) {
      entry = emptyInterval();
      this.images.set(image, entry);
    }
    return entry;
  }
}

function emptyInterval(): ImageInterval {
  return { bytesIn: 0, bytesOut: 0, launches: 0, attestationFailures: 0, replays: 0, gpuComputeUs: 0, latencies: new Map(), queued: 0, queuedMax: 0, liveSessions: 0 };
}
