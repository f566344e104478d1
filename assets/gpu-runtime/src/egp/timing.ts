/**
 * Where the time of one EGP operation went, in microseconds, as the demo and the benchmark
 * break it down:
 *
 *   seal       sealing its frames in the enclave
 *   transport  round trip (frames handed to the socket -> last result frame received) minus
 *              queue and compute: the links, SGS's relaying, the context's opening and
 *              sealing, and any wait behind earlier pipelined operations
 *   queue      queueUs from {t: done}: time SGS held it before the context took it
 *   compute    computeUs from {t: done}: the kernel (or copy) in the context
 *   open       opening its result frames in the enclave
 *
 * `totalUs` runs from the application's call to the promise settling, so it also holds the
 * time the call waited for room in the pipeline.
 */
export interface OperationTiming {
  readonly sealUs: number;
  readonly transportUs: number;
  readonly queueUs: number;
  readonly computeUs: number;
  readonly openUs: number;
  readonly roundTripUs: number;
  readonly totalUs: number;
  /** How many sessions the call took (more than 1 after a reconnect). */
  readonly attempts: number;
}

/** A monotonic clock in microseconds (fractional). */
export function nowUs(): number {
  return Number(process.hrtime.bigint()) / 1e3;
}

/** Mutable timing of the current attempt, turned into an OperationTiming when the call settles. */
export class TimingRecorder {
  private readonly calledAt = nowUs();
  sealUs = 0;
  openUs = 0;
  sentAt = 0;
  receivedAt = 0;
  queueUs = 0;
  computeUs = 0;
  attempts = 0;

  /** Starts a new attempt: what an earlier session measured no longer describes this one. */
  restart(): void {
    this.sealUs = 0;
    this.openUs = 0;
    this.sentAt = 0;
    this.receivedAt = 0;
    this.queueUs = 0;
    this.computeUs = 0;
    this.attempts++;
  }

  finish(): OperationTiming {
    const roundTripUs = this.sentAt > 0 && this.receivedAt >= this.sentAt ? this.receivedAt - this.sentAt : 0;
    return {
      sealUs: this.sealUs,
      transportUs: Math.max(0, roundTripUs - this.queueUs - this.computeUs),
      queueUs: this.queueUs,
      computeUs: this.computeUs,
      openUs: this.openUs,
      roundTripUs,
      totalUs: nowUs() - this.calledAt,
      attempts: this.attempts,
    };
  }
}

/** The q-quantile (0..1) of `values` by the nearest-rank method; NaN when empty. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)));
  return sorted[rank - 1];
}
