/**
 * Handles a connection's records one at a time, in arrival order, even when handling one
 * waits (a launch running, a socket draining): operations of a session run in stream order.
 * Bounded: above `maxBytes` of waiting records the socket is paused, and resumed below half
 * of it, so a peer that pipelines faster than kernels run fills its own buffers, not ours.
 */
export interface FlowControl {
  pause(): void;
  resume(): void;
}

export class RecordQueue<T> {
  private readonly items: { item: T; bytes: number }[] = [];
  private queuedBytes = 0;
  private running = false;
  private paused = false;
  private stopped = false;

  constructor(
    private readonly handle: (item: T) => Promise<void> | void,
    private readonly flow: FlowControl,
    private readonly maxBytes: number,
  ) {}

  push(item: T, bytes: number): void {
    if (this.stopped) return;
    this.items.push({ item, bytes });
    this.queuedBytes += bytes;
    if (!this.paused && this.queuedBytes > this.maxBytes) {
      this.paused = true;
      this.flow.pause();
    }
    if (!this.running) void this.drain();
  }

  /** Drops what is waiting; nothing more is handled. */
  stop(): void {
    this.stopped = true;
    this.items.length = 0;
    this.queuedBytes = 0;
  }

  private async drain(): Promise<void> {
    this.running = true;
    try {
      while (!this.stopped && this.items.length > 0) {
        const { item, bytes } = this.items.shift()!;
        this.queuedBytes -= bytes;
        if (this.paused && this.queuedBytes <= this.maxBytes / 2) {
          this.paused = false;
          this.flow.resume();
        }
        await this.handle(item); // the handler reports its own errors
      }
    } finally {
      this.running = false;
    }
  }
}
