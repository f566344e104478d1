/**
 * An htod's data: the caller's bytes, sealed straight from where they are, and the client's
 * own copy for the replay journal, made once the frames are on their way (the client is
 * waiting for the answer then anyway) rather than before sealing, where it would add a pass
 * over the data to every upload's latency. The caller may not change the bytes until the
 * call settles (as with cudaMemcpyAsync); from then on only the copy is used.
 */
import type { BufferPool } from '../buffer-pool';

export class UploadCopy {
  private copied?: Buffer;

  constructor(private readonly source: Buffer, private readonly pool: BufferPool) {}

  /** What to seal: the copy once made, else the caller's bytes. */
  get bytes(): Buffer {
    return this.copied ?? this.source;
  }

  /** The client's copy, made now if it was not yet (idempotent). */
  copy(): Buffer {
    if (this.copied === undefined) {
      const copy = this.pool.acquire(this.source.length);
      copy.set(this.source);
      this.copied = copy;
    }
    return this.copied;
  }

  /** True when `buffer` is this upload's copy (so it must not go back to the pool). */
  owns(buffer: Buffer): boolean {
    return this.copied === buffer;
  }
}
