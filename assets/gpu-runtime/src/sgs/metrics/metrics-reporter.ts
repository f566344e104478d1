/**
 * Every flush interval, the recorder's data go to the publisher's buffer and the buffer to
 * CloudWatch. One flush at a time; a slow or failing CloudWatch only grows the (bounded)
 * buffer. stop() takes the last interval and flushes once more, within a time limit.
 */
import { MetricPublisher } from './metric-publisher';
import { MetricRecorder } from './metric-recorder';

export class MetricsReporter {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly recorder: MetricRecorder,
    private readonly publisher: MetricPublisher,
    private readonly instanceId: string,
    private readonly intervalMs: number,
  ) {}

  start(): void {
    this.timer ??= setInterval(() => void this.flush(), this.intervalMs);
    this.timer.unref();
  }

  /** Moves the current interval into the buffer and sends what is buffered. */
  flush(): Promise<boolean> {
    this.publisher.enqueue(this.recorder.collect(this.instanceId));
    return this.publisher.flush();
  }

  /** The final flush: resolves true when everything was sent, false on failure or after `timeoutMs`. */
  async stop(timeoutMs: number): Promise<boolean> {
    clearInterval(this.timer);
    this.timer = undefined;
    let timeout: NodeJS.Timeout | undefined;
    const expired = new Promise<boolean>((resolve) => { timeout = setTimeout(() => resolve(false), timeoutMs); });
    try {
      return await Promise.race([this.flush(), expired]);
    } finally {
      clearTimeout(timeout);
    }
  }
}
