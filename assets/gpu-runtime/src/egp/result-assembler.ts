/**
 * Assembles one operation's direction-1 stream after each chunk is opened: chunk 0 is the
 * result descriptor ({ok: true, size?} or {ok: false, code, reason}); a successful dtoh is
 * followed by `size` bytes of data chunks for its buffer. Anything else is a protocol
 * violation by the host (MALFORMED), which ends the session.
 *
 * A dtoh result is 8-byte aligned, so an application can view it as Float32Array or
 * Float64Array. One that fits one chunk that happens to be aligned in its frame is returned as
 * a view of the opened frame (a fresh buffer of its own, decrypted in place); others are
 * copied once into a new buffer of the announced size (Buffer.allocUnsafe is 8-aligned).
 */
import type { OpenedChunk } from '../abe/frame';
import { DESCRIPTOR_BUFFER, OperationRequest, OperationResult, decodeResult } from '../protocol/op-descriptor';
import { WireError } from '../protocol/wire-error';

const ALIGNMENT = 8;
/** Memory a view may keep alive beyond its own bytes before a copy is preferred. */
const MAX_RETAINED_SLACK = 4096;

/**
 * True when a view would keep much more memory alive than it shows: a small frame read
 * together with others shares their socket read (abe/frame-reader.ts), and an application
 * holding many small results must not hold every read they came in.
 */
function retainsMore(view: Buffer): boolean {
  return view.buffer.byteLength > 2 * view.length + MAX_RETAINED_SLACK;
}

export class ResultAssembler {
  result?: OperationResult;
  output?: Buffer;
  private size = 0;
  private received = 0;

  /**
   * @param request what was asked
   * @param maxOutputBytes for dtoh: the size the buffer was allocated with; a larger answer is refused
   */
  constructor(
    private readonly request: OperationRequest,
    private readonly maxOutputBytes: number,
    private readonly allocate: (size: number) => Buffer = Buffer.allocUnsafe,
  ) {}

  /** Takes the next opened chunk; returns true when the result is complete. */
  accept(chunk: OpenedChunk): boolean {
    if (chunk.chunk === 0) return this.acceptDescriptor(chunk);
    const { request } = this;
    if (request.op !== 'dtoh' || this.result?.ok !== true || chunk.buffer !== request.buffer) {
      throw new WireError('MALFORMED', `operation ${request.op}: an unexpected data chunk for buffer ${chunk.buffer}`);
    }
    const length = chunk.plaintext.length;
    if (this.received + length > this.size) {
      throw new WireError('MALFORMED', `dtoh of buffer ${request.buffer}: more than the ${this.size} bytes announced`);
    }
    if (this.received === 0 && length === this.size && chunk.plaintext.byteOffset % ALIGNMENT === 0 && !retainsMore(chunk.plaintext)) {
      this.output = chunk.plaintext; // the whole buffer in one aligned chunk: no copy
    } else {
      this.output ??= this.allocate(this.size);
      chunk.plaintext.copy(this.output, this.received);
    }
    this.received += length;
    return this.checkEnd(chunk.last);
  }

  private acceptDescriptor(chunk: OpenedChunk): boolean {
    if (chunk.buffer !== DESCRIPTOR_BUFFER) {
      throw new WireError('MALFORMED', `a result descriptor must be in buffer ${DESCRIPTOR_BUFFER}, got ${chunk.buffer}`);
    }
    const result = decodeResult(chunk.plaintext);
    this.result = result;
    const wantsData = result.ok && this.request.op === 'dtoh';
    if (!wantsData) {
      if (result.ok && result.size !== undefined) {
        throw new WireError('MALFORMED', `a ${this.request.op} result carries no size`);
      }
      if (!chunk.last) throw new WireError('MALFORMED', `a ${this.request.op} result is one chunk`);
      return true;
    }
    if (result.size === undefined || result.size > this.maxOutputBytes) {
      throw new WireError('MALFORMED', `a dtoh result must announce a size of at most ${this.maxOutputBytes} bytes`);
    }
    this.size = result.size;
    if (this.size === 0) this.output = Buffer.alloc(0);
    return this.checkEnd(chunk.last);
  }

  private checkEnd(last: boolean): boolean {
    if (!last) return false;
    if (this.received !== this.size) {
      throw new WireError('MALFORMED', `dtoh ended after ${this.received} of the ${this.size} bytes announced`);
    }
    return true;
  }
}
