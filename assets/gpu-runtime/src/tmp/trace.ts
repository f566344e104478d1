// TEMPORARY latency tracing (remove before handing back).
import { writeFileSync } from 'node:fs';
const file = process.env.EGPU_TRACE;
const marks: string[] = [];
export const tracing = file !== undefined;
export function mark(label: string, extra: number | string = ''): void {
  if (file === undefined) return;
  marks.push(`${process.hrtime.bigint()} ${label} ${extra}`);
}
if (file !== undefined) {
  const dump = () => { try { writeFileSync(`${file}.${process.pid}`, marks.join('\n') + '\n'); } catch { /* */ } };
  process.on('exit', dump);
  process.on('SIGTERM', () => { dump(); });
}
(globalThis as any).__egpuMark = mark;
