/**
 * A bounded pool of large buffers, reused by exact size. On these machines a fresh 600 KB
 * allocation costs about 30 times a copy into memory already touched (every page is a fault
 * on first use), and an inference loop uploads and seals buffers of the same few sizes over
 * and over: the journal's copy of each input, the sealed frames of each operation.
 *
 * Only buffers nobody references any more may be released here; acquire() hands them out
 * with their old contents (callers overwrite them whole).
 */
export class BufferPool {
  private readonly free = new Map<number, Buffer[]>();
  private heldBytes = 0;

  /**
   * @param maxBytes most bytes kept for reuse; beyond it released buffers are left to the collector
   * @param minBytes smaller buffers are not pooled (Node's own allocation pool serves them)
   */
  constructor(private readonly maxBytes: number, private readonly minBytes = 64 * 1024) {}

  get bytes(): number {
    return this.heldBytes;
  }

  /** A buffer of exactly `size` bytes, reused when one is free (small ones from Node's own pool). */
  acquire(size: number): Buffer {
    if (size < this.minBytes) return Buffer.allocUnsafe(size);
    const list = this.free.get(size);
    const reused = list?.pop();
    if (reused !== undefined) {
      this.heldBytes -= size;
      if (list!.length === 0) this.free.delete(size);
      return reused;
    }
    return Buffer.allocUnsafeSlow(size);
  }

  /** Takes back a buffer from acquire() that nothing references any more. */
  release(buffer: Buffer): void {
    const size = buffer.length;
    if (size < this.minBytes || buffer.byteOffset !== 0 || buffer.buffer.byteLength !== size) return; // only whole buffers from acquire()
    if (this.heldBytes + size > this.maxBytes) this.evict(this.heldBytes + size - this.maxBytes);
    if (this.heldBytes + size > this.maxBytes) return;
    let list = this.free.get(size);
    if (list === undefined) this.free.set(size, (list = []));
    list.push(buffer);
    this.heldBytes += size;
  }

  /** Drops free buffers, sizes first pooled first, until `bytes` are gone. */
  private evict(bytes: number): void {
    for (const [size, list] of this.free) {
      while (list.length > 0 && bytes > 0) {
        list.pop();
        this.heldBytes -= size;
        bytes -= size;
      }
      if (list.length === 0) this.free.delete(size);
      if (bytes <= 0) return;
    }
  }
}
