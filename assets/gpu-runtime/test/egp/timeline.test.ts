/**
 * EGPU_TRACE: the EGP, SGS and the context each note when an operation passes through them,
 * and scripts/trace-report.ts merges the three into steps per kind of operation. Real
 * processes: the children inherit EGPU_TRACE and append their events when they exit.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderTimelineSummary, summarizeTimeline } from '../../../../scripts/trace-report';
import { startLocalStack } from '../../src/egp/local-stack';
import { flushTimeline, timelineEnabled } from '../../src/timeline';
import { connect, f32Bytes, f32Values } from './helpers';

describe('summarizeTimeline', () => {
  const session = 'abcd0123';
  // Two htod operations through the three processes, then a garbage collection and a drop notice.
  const text = [
    `1000000 10 egp send ${session}:1 op=htod`,
    `1100000 10 egp sealed ${session}:1`,
    `1300000 20 sgs begin ${session}:1`,
    `1300000 20 sgs dispatch ${session}:1`,
    `1700000 30 ctx begin ${session}:1`,
    `1700000 30 ctx begin ${session}:1`, // a second occurrence: only the first counts
    `1800000 30 ctx executed ${session}:1 computeUs=50`,
    `2000000 10 egp done ${session}:1`,
    `5000000 10 egp send ${session}:2 op=htod`,
    `5300000 10 egp sealed ${session}:2`,
    `5400000 20 sgs begin ${session}:2`,
    `5400000 20 sgs dispatch ${session}:2`,
    `5500000 30 ctx begin ${session}:2`,
    `5600000 30 ctx executed ${session}:2 computeUs=50`,
    `6000000 10 egp done ${session}:2`,
    '6100000 30 - gc - kind=1 700us',
    '6200000 30 - gc - kind=4 1300us',
    '6300000 20 - dropped - 5',
    'not a line',
  ].join('\n');

  it('gives each step between consecutive events of an operation, per kind, in the order they happen', () => {
    const summary = summarizeTimeline(text);
    expect(summary.operations).toBe(2);
    expect(summary.kinds).toHaveLength(1);
    const [htod] = summary.kinds;
    expect(htod.kind).toBe('htod');
    expect(htod.steps.map((s) => s.step)).toEqual([
      'egp.send -> egp.sealed',
      'egp.sealed -> sgs.begin',
      'sgs.begin -> sgs.dispatch',
      'sgs.dispatch -> ctx.begin',
      'ctx.begin -> ctx.executed',
      'ctx.executed -> egp.done',
    ]);
    const step = (name: string) => htod.steps.find((s) => s.step === name)!;
    expect(step('egp.send -> egp.sealed')).toMatchObject({ count: 2, p50Us: 100, p90Us: 300 });
    expect(step('sgs.dispatch -> ctx.begin')).toMatchObject({ p50Us: 100, p90Us: 400 });
    // First to last event, the 50 us of compute taken out: 1000 - 50 and 1000 - 50.
    expect(htod.operationUs).toEqual({ p50: 950, p90: 950 });
    expect(summary.gc).toEqual([{ pid: 30, role: 'ctx', count: 2, totalMs: 2, maxMs: 1.3 }]);
    expect(summary.dropped).toBe(5);
    expect(renderTimelineSummary(summary)).toContain('5 events were dropped');
  });
});

describe('EGPU_TRACE across the EGP, SGS and the context', () => {
  const dir = mkdtempSync(join(tmpdir(), 'egpu-timeline-'));
  const file = join(dir, 'trace');
  const before = process.env.EGPU_TRACE;

  beforeAll(() => {
    process.env.EGPU_TRACE = file; // read on first use here, and inherited by the children
  });

  afterAll(() => {
    if (before === undefined) delete process.env.EGPU_TRACE;
    else process.env.EGPU_TRACE = before;
    rmSync(dir, { recursive: true, force: true });
  });

  it('notes every operation in all three processes, and the report puts the steps together', async () => {
    const stack = await startLocalStack();
    try {
      const gpu = await connect(stack);
      expect(timelineEnabled()).toBe(true);
      const [a, b, out] = await Promise.all([gpu.malloc(8), gpu.malloc(8), gpu.malloc(8)]);
      await Promise.all([gpu.memcpyHtoD(a, f32Bytes([1, 2])), gpu.memcpyHtoD(b, f32Bytes([3, 4]))]);
      await gpu.launchKernel('add', { a, b, out, count: 2 });
      expect(f32Values(await gpu.memcpyDtoH(out))).toEqual([4, 6]);
      gpu.close();
    } finally {
      await stack.stop(); // SGS and the context append their events as they exit
    }
    flushTimeline();
    const text = readFileSync(file, 'utf8');
    const pidsByRole = new Map<string, Set<string>>();
    for (const [, pid, role] of text.trim().split('\n').map((line) => line.split(' '))) {
      if (role !== '-') pidsByRole.set(role, (pidsByRole.get(role) ?? new Set()).add(pid));
    }
    expect([...pidsByRole.keys()].sort()).toEqual(['ctx', 'egp', 'sgs']);
    expect(new Set([...pidsByRole.values()].map((pids) => [...pids].join()))).toHaveProperty('size', 3); // three processes

    const summary = summarizeTimeline(text);
    expect(summary.kinds.map((k) => k.kind).sort()).toEqual(['dtoh', 'htod', 'launch:add', 'malloc']);
    const launch = summary.kinds.find((k) => k.kind === 'launch:add')!;
    expect(launch.operations).toBe(1);
    const names = launch.steps.map((s) => s.step);
    // Steps that follow from cause and effect (within a process, or a write and its read); others depend on scheduling.
    for (const step of ['egp.send -> egp.sealed', 'sgs.arrived -> sgs.dispatch', 'ctx.arrived -> ctx.executed', 'ctx.sent -> sgs.result', 'sgs.result -> sgs.done', 'egp.answered -> egp.done']) {
      expect(names).toContain(step);
    }
    expect(launch.operationUs.p50).toBeGreaterThan(0);
    // Each line: an operation number, 8 hex digits of the session id, and the kind or computeUs: nothing of the data or the keys.
    for (const fields of text.trim().split('\n').map((line) => line.split(' ')).filter((f) => f[2] !== '-')) {
      expect(fields[4]).toMatch(/^[0-9a-f]{8}:\d+$/);
      for (const detail of fields.slice(5)) expect(detail).toMatch(/^(op=[a-z]+(:[a-z.]+)?|computeUs=\d+)$/);
    }
  }, 60_000);
});
