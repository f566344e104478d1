/**
 * Splits a byte stream (a socket) into whole frames. The 4-byte length prefix is checked
 * against MAX_FRAME_BYTES as soon as it is complete, before any buffer for the frame is
 * allocated, so a hostile prefix costs nothing; at most one frame's bytes are ever held.
 */
import { AbeError } from './errors';
import { LENGTH_PREFIX_BYTES, readBodyLength } from './frame-codec';

export class FrameReader {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Body length of the frame being assembled, once its prefix is complete. */
  private bodyLength: number | undefined;
  private failed = false;

  /** Adds bytes from the stream; returns the frames they complete (length prefix included). */
  push(bytes: Buffer): Buffer[] {
    if (this.failed) throw new AbeError('CLOSED', 'the frame stream already failed');
    const frames: Buffer[] = [];
    let rest = bytes;
    try {
      while (rest.length > 0) {
        rest = this.consume(rest, frames);
      }
    } catch (error) {
      this.failed = true;
      this.pending = [];
      throw error;
    }
    return frames;
  }

  /** At the end of the stream: throws TRUNCATED if a frame was cut off. */
  end(): void {
    if (this.pendingBytes > 0) {
      this.failed = true;
      throw new AbeError('TRUNCATED', `the stream ended ${this.pendingBytes} bytes into a frame`);
    }
  }

  /** Takes what the current frame still needs from `bytes`; returns the remainder. */
  private consume(bytes: Buffer, frames: Buffer[]): Buffer {
    const wanted = (this.bodyLength === undefined ? LENGTH_PREFIX_BYTES : LENGTH_PREFIX_BYTES + this.bodyLength) - this.pendingBytes;
    const taken = bytes.subarray(0, wanted);
    this.pending.push(taken);
    this.pendingBytes += taken.length;
    if (this.bodyLength === undefined && this.pendingBytes === LENGTH_PREFIX_BYTES) {
      this.bodyLength = readBodyLength(Buffer.concat(this.pending, LENGTH_PREFIX_BYTES)); // TOO_LARGE before the body is allocated
    }
    if (this.bodyLength !== undefined && this.pendingBytes === LENGTH_PREFIX_BYTES + this.bodyLength) {
      frames.push(Buffer.concat(this.pending, this.pendingBytes));
      this.pending = [];
      this.pendingBytes = 0;
      this.bodyLength = undefined;
    }
    return bytes.subarray(taken.length);
  }
}
