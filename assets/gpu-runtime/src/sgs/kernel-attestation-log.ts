/**
 * The kernel-attestation log: one JSON line per kernel launch (KernelAttestationRecord of the
 * metric catalogue), appended to a file the CloudWatch agent ships. The file is opened when
 * SGS starts, so a path it cannot write is a start-up error rather than silently lost records.
 *
 * Records are gathered for up to FLUSH_DELAY_MS (or FLUSH_BYTES) and written together: a
 * file write goes through libuv's thread pool, two thread wake-ups that a launch's answer
 * would otherwise wait behind on a small host. close() writes what is pending.
 */
import { WriteStream, createWriteStream, openSync } from 'node:fs';
import { KernelAttestationRecord } from '../../../../lib/observability/metric-catalogue';
import { RuntimeError } from '../errors';

/** The longest a record waits in memory before it is written. */
const FLUSH_DELAY_MS = 100;
/** Pending records beyond this many bytes are written at once. */
const FLUSH_BYTES = 64 * 1024;

export class KernelAttestationLog {
  private readonly stream: WriteStream;
  private failed = false;
  private written = 0;
  private pending: string[] = [];
  private pendingBytes = 0;
  private flushTimer: NodeJS.Timeout | undefined;

  /** Opens (creating, mode 0640) `path` for appending. */
  static open(path: string, log: (line: string) => void): KernelAttestationLog {
    let fd: number;
    try {
      fd = openSync(path, 'a', 0o640);
    } catch (error) {
      throw new RuntimeError('KERNEL_LOG', `cannot open the kernel-attestation log ${path}: ${(error as Error).message}`);
    }
    return new KernelAttestationLog(fd, path, log);
  }

  private constructor(fd: number, private readonly path: string, private readonly log: (line: string) => void) {
    this.stream = createWriteStream('', { fd, flags: 'a' });
    this.stream.on('error', (error) => {
      if (!this.failed) this.log(`sgs: writing the kernel-attestation log ${this.path} failed: ${error.message}`);
      this.failed = true;
    });
  }

  /** Records taken so far (handed to the file, or pending for at most FLUSH_DELAY_MS). */
  get records(): number {
    return this.written;
  }

  write(record: KernelAttestationRecord): void {
    if (this.failed) return;
    const line = `${JSON.stringify(record)}\n`;
    this.pending.push(line);
    this.pendingBytes += line.length;
    this.written++;
    if (this.pendingBytes >= FLUSH_BYTES) {
      this.flush();
    } else if (this.flushTimer === undefined) {
      this.flushTimer = setTimeout(() => this.flush(), FLUSH_DELAY_MS);
      this.flushTimer.unref();
    }
  }

  /** Hands the pending records to the file in one write. */
  private flush(): void {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (this.pending.length === 0) return;
    const text = this.pending.join('');
    this.pending = [];
    this.pendingBytes = 0;
    if (!this.failed && !this.stream.destroyed) this.stream.write(text);
  }

  /** Flushes what is pending and closes the file. */
  close(): Promise<void> {
    this.flush();
    return new Promise((resolve) => {
      if (this.stream.closed || this.stream.destroyed) {
        resolve();
        return;
      }
      this.stream.end(() => resolve());
    });
  }
}
