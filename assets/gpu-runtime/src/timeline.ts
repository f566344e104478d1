/**
 * Where an operation's time goes, across processes: with EGPU_TRACE=FILE in its environment,
 * each process of the offload path (the EGP client, `egpu sgs`, `egpu context`) notes the
 * moments an operation passes through it and appends them to FILE when it exits, one line
 * per event:
 *
 *   <CLOCK_MONOTONIC ns> <pid> <role> <event> <session>:<n> [detail]
 *
 * The monotonic clock is one clock for every process of a machine, so the lines of EGP, SGS
 * and the context merge into one timeline; `npm run trace-report -- FILE` summarizes it.
 * Garbage collections are noted too (event `gc`, detail: kind and duration), since a pause
 * in any of the three processes shows up as transport time.
 *
 * For diagnosing latency on one machine, not for production: events stay in memory (at most
 * MAX_EVENTS, the oldest kept) until the process exits, and a process killed with SIGKILL
 * loses its share. Lines carry operation numbers and 8 hex digits of the session id, nothing
 * else of a session. Without EGPU_TRACE every call is one comparison.
 */
import { appendFileSync } from 'node:fs';
import { PerformanceEntry, PerformanceObserver, performance } from 'node:perf_hooks';

type TimelineRole = 'egp' | 'sgs' | 'ctx';

/** Events kept per process; beyond this, later events are dropped (and counted). */
const MAX_EVENTS = 1_000_000;

interface Recorder {
  readonly file: string;
  readonly lines: string[];
  dropped: number;
}

let recorder: Recorder | null | undefined;

/** The recorder, created on first use when EGPU_TRACE names a file. */
function active(): Recorder | null {
  if (recorder !== undefined) return recorder;
  const file = process.env.EGPU_TRACE;
  recorder = file ? { file, lines: [], dropped: 0 } : null;
  if (recorder !== null) start(recorder);
  return recorder;
}

function start(r: Recorder): void {
  process.on('exit', () => flushTimeline());
  const gc = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      // The entry's start, moved from performance.now()'s clock to the monotonic one.
      const at = process.hrtime.bigint() - BigInt(Math.round((performance.now() - entry.startTime) * 1e6));
      const kind = (entry as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind ?? 0;
      push(r, `${at} ${process.pid} - gc - kind=${kind} ${Math.round(entry.duration * 1000)}us`);
    }
  });
  gc.observe({ entryTypes: ['gc'] });
}

function push(r: Recorder, line: string): void {
  if (r.lines.length >= MAX_EVENTS) r.dropped++;
  else r.lines.push(line);
}

/** True when EGPU_TRACE is set (callers with costly details can skip building them). */
export function timelineEnabled(): boolean {
  return active() !== null;
}

/**
 * Notes that operation `n` of `session` reached `event` in this process now.
 * @param session the session id (its first 4 bytes name the session in the line)
 */
export function mark(role: TimelineRole, event: string, session: Buffer, n: number, detail?: string): void {
  const r = active();
  if (r === null) return;
  push(r, `${process.hrtime.bigint()} ${process.pid} ${role} ${event} ${session.subarray(0, 4).toString('hex')}:${n}${detail === undefined ? '' : ` ${detail}`}`);
}

/** Appends what was noted so far to the file and forgets it (also done at exit). */
export function flushTimeline(): void {
  const r = active();
  if (r === null || (r.lines.length === 0 && r.dropped === 0)) return;
  if (r.dropped > 0) r.lines.push(`${process.hrtime.bigint()} ${process.pid} - dropped - ${r.dropped}`);
  // One write per flush: with O_APPEND the processes' blocks do not interleave.
  appendFileSync(r.file, `${r.lines.join('\n')}\n`);
  r.lines.length = 0;
  r.dropped = 0;
}
