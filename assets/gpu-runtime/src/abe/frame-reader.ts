/**
 * Splits a byte stream (a socket) into whole frames. The 4-byte length prefix is checked
 * against MAX_FRAME_BYTES as soon as it is complete, before any buffer for the frame is
 * allocated, so a hostile prefix costs nothing; at most one frame's bytes are ever held.
 *
 * A frame that lies whole within one pushed chunk and is at least half of its memory is
 * returned as a view of it (no copy: socket reads are fresh memory that nothing else
 * writes); a smaller one is copied, so that a frame held (queued at SGS, kept by an
 * application) never keeps alive more than twice its own bytes. A frame spread over
 * several chunks is copied, piece by piece as they come, into a buffer of its size, from
 * the frame pool when it is large (frame-pool.ts: its holder may give it back).
 */
import { AbeError } from './errors';
import { LENGTH_PREFIX_BYTES, readBodyLength } from './frame-codec';
import { allocateFrame } from './frame-pool';

export class FrameReader {
  /** The length prefix of the next frame while it is incomplete. */
  private readonly prefix = Buffer.alloc(LENGTH_PREFIX_BYTES);
  private prefixBytes = 0;
  /** The frame being assembled across chunks, once its prefix is complete, and how much of it has arrived. */
  private frame: Buffer | undefined;
  private frameBytes = 0;
  private failed = false;

  /** Adds bytes from the stream; returns the frames they complete (length prefix included). */
  push(bytes: Buffer): Buffer[] {
    if (this.failed) throw new AbeError('CLOSED', 'the frame stream already failed');
    const frames: Buffer[] = [];
    try {
      let offset = 0;
      while (offset < bytes.length) offset = this.consume(bytes, offset, frames);
    } catch (error) {
      this.failed = true;
      this.frame = undefined;
      throw error;
    }
    return frames;
  }

  /** At the end of the stream: throws TRUNCATED if a frame was cut off. */
  end(): void {
    const held = this.frame !== undefined ? this.frameBytes : this.prefixBytes;
    if (held > 0) {
      this.failed = true;
      throw new AbeError('TRUNCATED', `the stream ended ${held} bytes into a frame`);
    }
  }

  /** Takes what the current frame still needs from `bytes` at `offset`; returns the offset after it. */
  private consume(bytes: Buffer, offset: number, frames: Buffer[]): number {
    if (this.frame !== undefined) {
      const taken = Math.min(this.frame.length - this.frameBytes, bytes.length - offset);
      bytes.copy(this.frame, this.frameBytes, offset, offset + taken);
      this.frameBytes += taken;
      if (this.frameBytes === this.frame.length) {
        frames.push(this.frame);
        this.frame = undefined;
        this.frameBytes = 0;
      }
      return offset + taken;
    }
    if (this.prefixBytes === 0 && bytes.length - offset >= LENGTH_PREFIX_BYTES) {
      // The usual case: the prefix is whole here. TOO_LARGE before anything is allocated.
      const frameLength = LENGTH_PREFIX_BYTES + readBodyLength(bytes.subarray(offset, offset + LENGTH_PREFIX_BYTES));
      if (bytes.length - offset >= frameLength) {
        frames.push(frameLength * 2 >= bytes.buffer.byteLength
          ? bytes.subarray(offset, offset + frameLength)
          : Buffer.from(bytes.subarray(offset, offset + frameLength)));
        return offset + frameLength;
      }
      this.startFrame(frameLength, bytes.subarray(offset, offset + LENGTH_PREFIX_BYTES), frames);
      return offset + LENGTH_PREFIX_BYTES;
    }
    // A prefix split across chunks.
    const taken = Math.min(LENGTH_PREFIX_BYTES - this.prefixBytes, bytes.length - offset);
    bytes.copy(this.prefix, this.prefixBytes, offset, offset + taken);
    this.prefixBytes += taken;
    if (this.prefixBytes === LENGTH_PREFIX_BYTES) {
      this.prefixBytes = 0;
      this.startFrame(LENGTH_PREFIX_BYTES + readBodyLength(this.prefix), this.prefix, frames);
    }
    return offset + taken;
  }

  private startFrame(frameLength: number, prefix: Buffer, frames: Buffer[]): void {
    const frame = allocateFrame(frameLength);
    prefix.copy(frame, 0, 0, LENGTH_PREFIX_BYTES);
    if (frameLength === LENGTH_PREFIX_BYTES) {
      frames.push(frame); // an empty body: complete with its prefix
      return;
    }
    this.frame = frame;
    this.frameBytes = LENGTH_PREFIX_BYTES;
  }
}
