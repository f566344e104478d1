/**
 * Checks the EGP's frames as they arrive and hands them, one by one, to the session's
 * operation gate: frame after frame of operation n until the one with `last`. SGS reads only
 * the headers, and those unauthenticated (it has no key): they route, count and order,
 * nothing more. The context authenticates every frame, so a header lie can at worst get its
 * own session refused there. The checks below are the cheap ones that keep a session's
 * stream well formed (one operation at a time, chunks in order, one digest per operation),
 * so garbage is refused here instead of occupying the GPU's queue.
 *
 * Frames are not held here: the gate either keeps a frame (queued, or already forwarded to
 * the context when the operation went ahead before its last frame) or refuses the operation
 * (BUSY), after which the rest of its frames are read and dropped.
 */
import { parseFrame } from '../abe/frame-codec';
import { releaseFrame } from '../abe/frame-pool';
import { ENCLAVE_TO_HOST } from '../abe/frame-header';
import { DESCRIPTOR_BUFFER } from '../protocol/op-descriptor';
import { WireError, toWireError } from '../protocol/wire-error';

/** The session's decisions about an operation as its frames arrive. */
export interface InboundGate {
  /**
   * The first frame of operation n arrived (it follows in append). Throw to end the session
   * (REPLAY); return false to drop the operation (the gate has answered BUSY).
   */
  begin(n: number, digest: Buffer, receivedAt: bigint): boolean;
  /**
   * The next frame of the operation begun last; `last` ends it. Throw to end the session
   * (TOO_LARGE); return false when the gate drops the operation now (BUSY): it has let go of
   * the frames it held, and this one is the caller's to release.
   */
  append(frame: Buffer, last: boolean): boolean;
}

interface Current {
  readonly n: number;
  readonly digest: Buffer;
  nextChunk: number;
  /** True once the gate refused the operation (BUSY): its remaining frames are read and discarded. */
  dropped: boolean;
}

export class InboundAssembler {
  private current: Current | undefined;

  constructor(private readonly sessionId: Buffer, private readonly gate: InboundGate) {}

  /** True while an operation has begun and its last frame has not arrived. */
  get midOperation(): boolean {
    return this.current !== undefined;
  }

  /** Takes the next frame; returns true when it was the last of an operation. Throws a WireError to end the session. */
  push(frame: Buffer): boolean {
    let header;
    try {
      header = parseFrame(frame).header;
    } catch (error) {
      throw toWireError(error);
    }
    if (header.dir !== ENCLAVE_TO_HOST) throw new WireError('MALFORMED', 'the enclave sent a frame of direction 1 (host to enclave)');
    if (!header.session.equals(this.sessionId)) throw new WireError('MALFORMED', 'the frame belongs to another session');

    let current = this.current;
    if (current === undefined) {
      if (header.chunk !== 0 || header.buffer !== DESCRIPTOR_BUFFER) {
        throw new WireError('MALFORMED', `operation ${header.n} must start with chunk 0 of buffer 0 (its descriptor), got chunk ${header.chunk} of buffer ${header.buffer}`);
      }
      const keep = this.gate.begin(header.n, header.digest, process.hrtime.bigint());
      current = { n: header.n, digest: header.digest, nextChunk: 0, dropped: !keep };
      this.current = current;
    } else {
      if (header.n !== current.n) throw new WireError('MALFORMED', `a frame of operation ${header.n} arrived before operation ${current.n} was complete`);
      if (!header.digest.equals(current.digest)) throw new WireError('MALFORMED', `operation ${current.n} changed its kernel digest mid-operation`);
    }
    if (header.chunk !== current.nextChunk) {
      throw new WireError('MALFORMED', `chunk ${header.chunk} of operation ${current.n} arrived where chunk ${current.nextChunk} was expected`);
    }
    current.nextChunk++;
    if (header.last) this.current = undefined;
    if (!current.dropped && !this.gate.append(frame, header.last)) current.dropped = true;
    if (current.dropped) releaseFrame(frame); // dropped (BUSY): nothing holds it
    return header.last;
  }
}
