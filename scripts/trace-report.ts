/**
 * Summarizes an EGPU_TRACE timeline (assets/gpu-runtime/src/timeline.ts): for every step an
 * operation takes from one noted moment to the next (egp.send -> egp.sealed -> sgs.begin ->
 * ... -> egp.done), how long it took, as a median and 90th percentile over the operations
 * that took it, in the order the steps happen; then the garbage collections of each process.
 *
 *   EGPU_TRACE=/tmp/egpu.trace npm run --silent bench      (or the demo, or your own app)
 *   npm run --silent trace-report -- /tmp/egpu.trace [--json]
 *
 * Operations are grouped by kind (htod, dtoh, launch:KERNEL, ...), as the EGP noted it.
 *
 * Steps are between consecutive events of one operation, whichever process noted them, so a
 * step such as `ctx.sent -> sgs.result` is the hop from the context to SGS: the write, the
 * wake-up of SGS and its read. Only the first occurrence of an event counts for an operation
 * (an upload of several frames is `sgs.begin` at its first and `sgs.arrived` at its last).
 */
import { readFileSync } from 'node:fs';
import { quantile } from '../assets/gpu-runtime/src/egp/timing';

export interface StepSummary {
  /** `role.event -> role.event` */
  readonly step: string;
  readonly count: number;
  readonly p50Us: number;
  readonly p90Us: number;
  /** Median time from the operation's first event to this step's start, for ordering. */
  readonly offsetUs: number;
}

export interface GcSummary {
  readonly pid: number;
  readonly role: string;
  readonly count: number;
  readonly totalMs: number;
  readonly maxMs: number;
}

/** The operations of one kind (the EGP's `op=` detail: htod, dtoh, launch:KERNEL, ...). */
export interface KindSummary {
  readonly kind: string;
  readonly operations: number;
  /** First to last event of an operation, the context's compute taken out. */
  readonly operationUs: { readonly p50: number; readonly p90: number };
  readonly steps: StepSummary[];
}

export interface TimelineSummary {
  readonly operations: number;
  readonly kinds: KindSummary[];
  readonly gc: GcSummary[];
  readonly dropped: number;
}

interface Event {
  readonly ns: bigint;
  readonly pid: number;
  readonly name: string;
  readonly detail: string;
}

export function summarizeTimeline(text: string): TimelineSummary {
  const operations = new Map<string, Event[]>();
  const roles = new Map<number, string>();
  const gcs = new Map<number, number[]>();
  let dropped = 0;
  for (const line of text.split('\n')) {
    const fields = line.trim().split(' ');
    if (fields.length < 5) continue;
    const [ns, pidText, role, event, key, ...rest] = fields;
    const pid = Number(pidText);
    if (event === 'gc') {
      const us = Number(/^(\d+)us$/.exec(rest[rest.length - 1] ?? '')?.[1] ?? 0);
      gcs.set(pid, [...(gcs.get(pid) ?? []), us]);
      continue;
    }
    if (event === 'dropped') {
      dropped += Number(rest[0] ?? key) || 0;
      continue;
    }
    roles.set(pid, role);
    const list = operations.get(key) ?? [];
    list.push({ ns: BigInt(ns), pid, name: `${role}.${event}`, detail: rest.join(' ') });
    operations.set(key, list);
  }

  const byKind = new Map<string, Event[][]>();
  for (const events of operations.values()) {
    events.sort((a, b) => (a.ns < b.ns ? -1 : a.ns > b.ns ? 1 : 0));
    const seen = new Set<string>();
    const firsts = events.filter((event) => !seen.has(event.name) && seen.add(event.name));
    const kind = /op=(\S+)/.exec(firsts.find((event) => event.name === 'egp.send')?.detail ?? '')?.[1] ?? '(not seen at the EGP)';
    byKind.set(kind, [...(byKind.get(kind) ?? []), firsts]);
  }
  return {
    operations: operations.size,
    kinds: [...byKind.entries()].map(([kind, list]) => summarizeKind(kind, list)).sort((a, b) => b.operations - a.operations),
    gc: [...gcs.entries()].map(([pid, list]) => ({
      pid,
      role: roles.get(pid) ?? '?',
      count: list.length,
      totalMs: list.reduce((sum, us) => sum + us, 0) / 1e3,
      maxMs: Math.max(...list) / 1e3,
    })),
    dropped,
  };
}

/** Steps and totals over operations of one kind, each given as its events' first occurrences in time order. */
function summarizeKind(kind: string, operations: readonly Event[][]): KindSummary {
  const steps = new Map<string, { durations: number[]; offsets: number[] }>();
  const totals: number[] = [];
  for (const events of operations) {
    const start = events[0].ns;
    for (let i = 1; i < events.length; i++) {
      const step = `${events[i - 1].name} -> ${events[i].name}`;
      const entry = steps.get(step) ?? { durations: [], offsets: [] };
      entry.durations.push(Number(events[i].ns - events[i - 1].ns) / 1e3);
      entry.offsets.push(Number(events[i - 1].ns - start) / 1e3);
      steps.set(step, entry);
    }
    const computeUs = Number(/computeUs=(\d+)/.exec(events.find((event) => event.name === 'ctx.executed')?.detail ?? '')?.[1] ?? 0);
    if (events.length > 1) totals.push(Number(events[events.length - 1].ns - start) / 1e3 - computeUs);
  }
  return {
    kind,
    operations: operations.length,
    operationUs: { p50: quantile(totals, 0.5), p90: quantile(totals, 0.9) },
    steps: [...steps.entries()]
      .map(([step, { durations, offsets }]) => ({ step, count: durations.length, p50Us: quantile(durations, 0.5), p90Us: quantile(durations, 0.9), offsetUs: quantile(offsets, 0.5) }))
      .sort((a, b) => a.offsetUs - b.offsetUs || b.count - a.count),
  };
}

export function renderTimelineSummary(summary: TimelineSummary): string {
  const us = (value: number) => (Number.isNaN(value) ? '-' : value.toFixed(0)).padStart(9);
  const lines = [`${summary.operations} operations`];
  for (const kind of summary.kinds) {
    lines.push(
      '',
      `${kind.kind}: ${kind.operations} operations; first to last event, compute taken out: p50 ${us(kind.operationUs.p50).trim()} us, p90 ${us(kind.operationUs.p90).trim()} us`,
      `  ${'step'.padEnd(38)} ${'count'.padStart(6)} ${'p50 us'.padStart(9)} ${'p90 us'.padStart(9)}`,
      ...kind.steps.map((s) => `  ${s.step.padEnd(38)} ${String(s.count).padStart(6)} ${us(s.p50Us)} ${us(s.p90Us)}`),
    );
  }
  lines.push('', 'garbage collections (pid, role: count, total, longest)');
  lines.push(...summary.gc.map((g) => `  ${g.pid} ${g.role}: ${g.count}, ${g.totalMs.toFixed(1)} ms, ${g.maxMs.toFixed(1)} ms`));
  if (summary.dropped > 0) lines.push('', `${summary.dropped} events were dropped (a process noted more than it keeps)`);
  return lines.join('\n');
}

if (require.main === module) {
  const args = process.argv.slice(2);
  const file = args.find((arg) => !arg.startsWith('--'));
  if (file === undefined || args.includes('--help')) {
    console.error('usage: npm run --silent trace-report -- FILE [--json]   (FILE: what EGPU_TRACE=FILE collected)');
    process.exit(file === undefined ? 2 : 0);
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    console.error(`trace-report: cannot read ${file}: ${(error as Error).message}`);
    process.exit(1);
  }
  const summary = summarizeTimeline(text);
  console.log(args.includes('--json') ? JSON.stringify(summary) : renderTimelineSummary(summary));
}
