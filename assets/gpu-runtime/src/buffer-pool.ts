/**
 * A bounded pool of large buffers for reuse. On these machines a fresh 600 KB allocation
 * costs 10 to 30 times a copy into memory already touched (every page is a fault on first
 * use), and the offload moves buffers of the same few sizes over and over: the EGP's journal
 * copy of each input and the sealed frames of each operation, the frames SGS and the context
 * assemble from socket reads.
 *
 * acquire() hands out memory with its old contents (callers overwrite it whole). Only
 * memory nothing references any more may be released, by its one holder, once. release()
 * ignores memory this pool did not hand out and memory already given back and not handed
 * out again; it cannot tell a late second release after the memory was handed out again,
 * which would give it two holders: each holder releases at exactly one point, or not at all.
 */
export interface BufferPoolOptions {
  /** Most bytes kept free for reuse; beyond it released memory is left to the collector. */
  readonly maxBytes: number;
  /** Smaller requests are not pooled (Node's own allocation pool serves them). @default 64 KiB */
  readonly minBytes?: number;
  /**
   * Capacity granularity: a request is served from memory of its size rounded up to a
   * multiple of this, so requests of similar sizes share memory. @default 1 (exact sizes)
   */
  readonly classBytes?: number;
}

export class BufferPool {
  private readonly free = new Map<number, ArrayBuffer[]>();
  /** Memory handed out and not given back. */
  private readonly issued = new WeakSet<ArrayBuffer>();
  private heldBytes = 0;
  private readonly maxBytes: number;
  private readonly minBytes: number;
  private readonly classBytes: number;

  constructor(options: BufferPoolOptions) {
    this.maxBytes = options.maxBytes;
    this.minBytes = options.minBytes ?? 64 * 1024;
    this.classBytes = options.classBytes ?? 1;
    if (!(this.maxBytes >= 0) || !(this.minBytes >= 1) || !Number.isSafeInteger(this.classBytes) || this.classBytes < 1) {
      throw new RangeError(`a buffer pool needs maxBytes >= 0, minBytes >= 1 and a whole classBytes >= 1, got ${JSON.stringify(options)}`);
    }
  }

  /** Bytes held free for reuse. */
  get bytes(): number {
    return this.heldBytes;
  }

  /** A buffer of exactly `size` bytes: reused memory when some is free (small ones from Node's own pool). */
  acquire(size: number): Buffer {
    if (size < this.minBytes) return Buffer.allocUnsafe(size);
    const capacity = Math.ceil(size / this.classBytes) * this.classBytes;
    const list = this.free.get(capacity);
    let memory = list?.pop();
    if (memory !== undefined) {
      this.heldBytes -= capacity;
      if (list!.length === 0) this.free.delete(capacity);
    } else {
      memory = Buffer.allocUnsafeSlow(capacity).buffer as ArrayBuffer; // its own ArrayBuffer, of exactly `capacity`
    }
    this.issued.add(memory);
    return Buffer.from(memory, 0, size);
  }

  /** Takes back a buffer from acquire() that nothing references any more; ignores anything else. */
  release(buffer: Buffer): void {
    const memory = buffer.buffer;
    if (!(memory instanceof ArrayBuffer) || buffer.byteOffset !== 0 || !this.issued.has(memory)) return;
    this.issued.delete(memory);
    const capacity = memory.byteLength;
    if (capacity > this.maxBytes) return; // could never fit: keep what is pooled
    if (this.heldBytes + capacity > this.maxBytes) this.evict(this.heldBytes + capacity - this.maxBytes);
    if (this.heldBytes + capacity > this.maxBytes) return;
    let list = this.free.get(capacity);
    if (list === undefined) this.free.set(capacity, (list = []));
    list.push(memory);
    this.heldBytes += capacity;
  }

  /** Drops free memory, sizes first pooled first, until `bytes` are gone. */
  private evict(bytes: number): void {
    for (const [capacity, list] of this.free) {
      while (list.length > 0 && bytes > 0) {
        list.pop();
        this.heldBytes -= capacity;
        bytes -= capacity;
      }
      if (list.length === 0) this.free.delete(capacity);
      if (bytes <= 0) return;
    }
  }
}
