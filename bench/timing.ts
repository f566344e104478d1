/**
 * Timing helpers for the benchmarks. Throughput is the best of several runs, because
 * interference (other processes, GC, frequency changes) only ever makes a run slower; a
 * latency is reported as the median and the minimum of many calls.
 */

/** Seconds since `start` (a process.hrtime.bigint() reading). */
export function secondsSince(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/** One timed run: how many bytes it processed in how many seconds of timed work. */
export interface RunResult {
  readonly bytes: number;
  readonly seconds: number;
}

/** The best throughput, in GB/s (10^9 bytes per second, as OpenSSL reports), of `runs` runs. */
export function bestThroughput(runs: number, run: () => RunResult): number {
  let best = 0;
  for (let i = 0; i < runs; i++) {
    const { bytes, seconds } = run();
    best = Math.max(best, bytes / seconds / 1e9);
  }
  return best;
}

/** Median and minimum duration of `calls` calls of `action`, in milliseconds. */
export async function latency(calls: number, action: () => unknown): Promise<{ medianMs: number; minMs: number }> {
  const times: number[] = [];
  for (let i = 0; i < calls; i++) {
    const start = process.hrtime.bigint();
    await action();
    times.push(secondsSince(start) * 1e3);
  }
  times.sort((a, b) => a - b);
  return { medianMs: times[Math.floor(times.length / 2)], minMs: times[0] };
}
