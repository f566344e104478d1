/**
 * The kernel-attestation log: one JSON line per kernel launch (KernelAttestationRecord of the
 * metric catalogue), appended to a file the CloudWatch agent ships. The file is opened when
 * SGS starts, so a path it cannot write is a start-up error rather than silently lost records.
 */
import { WriteStream, createWriteStream, openSync } from 'node:fs';
import { KernelAttestationRecord } from '../../../../lib/observability/metric-catalogue';
import { RuntimeError } from '../errors';

export class KernelAttestationLog {
  private readonly stream: WriteStream;
  private failed = false;
  private written = 0;

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

  /** Records written (handed to the file) so far. */
  get records(): number {
    return this.written;
  }

  write(record: KernelAttestationRecord): void {
    if (this.failed) return;
    this.stream.write(`${JSON.stringify(record)}\n`);
    this.written++;
  }

  /** Flushes what is pending and closes the file. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      if (this.stream.closed || this.stream.destroyed) {
        resolve();
        return;
      }
      this.stream.end(() => resolve());
    });
  }
}
