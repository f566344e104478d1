/**
 * Reads exact byte counts from a stream's chunks, which arrive in whatever sizes the source
 * chose. Holds at most the bytes asked for plus one source chunk, so memory stays bounded by
 * the largest read.
 */
export class ByteReader {
  private buffered: Buffer = Buffer.alloc(0);
  private ended = false;
  /** Bytes returned so far. */
  public bytesRead = 0;

  constructor(private readonly source: AsyncIterator<unknown>) {}

  /** Exactly `length` bytes, or fewer only when the stream ends first (then all that was left). */
  public async read(length: number): Promise<Buffer> {
    const pieces = [this.buffered];
    let available = this.buffered.length;
    while (available < length && !this.ended) {
      const next = await this.source.next();
      if (next.done) {
        this.ended = true;
      } else {
        const piece = asBytes(next.value);
        pieces.push(piece);
        available += piece.length;
      }
    }
    const all = pieces.length === 1 ? pieces[0] : Buffer.concat(pieces, available);
    const result = all.subarray(0, Math.min(length, all.length));
    this.buffered = all.subarray(result.length);
    this.bytesRead += result.length;
    return result;
  }
}

/** A stream chunk as bytes: binary streams only (a stream with an encoding set yields strings). */
export function asBytes(chunk: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  throw new TypeError(`expected a binary stream, got a chunk of type ${typeof chunk}`);
}
