/**
 * Groups the EGP's frames into operations: frame after frame of operation n until the one
 * with `last`. SGS reads only the headers, and those unauthenticated (it has no key): they
 * route, count and order, nothing more. The context authenticates every frame, so a header
 * lie can at worst get its own session refused there. The checks below are the cheap ones
 * that keep a session's stream well formed (one operation at a time, chunks in order, one
 * digest per operation), so garbage is refused here instead of occupying the GPU's queue.
 */
import { parseFrame } from '../abe/frame-codec';
import { releaseFrame } from '../abe/frame-pool';
import { ENCLAVE_TO_HOST } from '../abe/frame-header';
import { DESCRIPTOR_BUFFER } from '../protocol/op-descriptor';
import { WireError, toWireError } from '../protocol/wire-error';

/** A whole operation from the EGP, as the ciphertext frames it came in. */
export interface InboundOperation {
  readonly n: number;
  /** The header digest: SHA-384 of the kernel's code or model, zeros for non-launch operations. */
  readonly digest: Buffer;
  readonly frames: Buffer[];
  /** Bytes of all its frames, length prefixes included. */
  readonly bytes: number;
  /** process.hrtime.bigint() when its first frame arrived. */
  readonly receivedAt: bigint;
}

/** The session's decisions about an operation as it arrives. */
export interface InboundGate {
  /**
   * The first frame of operation n arrived. Throw to end the session (REPLAY); return false
   * to drop the operation's frames (the gate has answered BUSY).
   */
  begin(n: number): boolean;
  /** The operation has grown to `bytes`; throw (TOO_LARGE) or return false (BUSY) as begin. */
  grow(n: number, bytes: number): boolean;
}

interface Current {
  readonly n: number;
  readonly digest: Buffer;
  readonly receivedAt: bigint;
  nextChunk: number;
  /** Null while the operation is being dropped (answered BUSY): its frames are read and discarded. */
  frames: Buffer[] | null;
  bytes: number;
}

export class InboundAssembler {
  private current: Current | undefined;

  constructor(private readonly sessionId: Buffer, private readonly gate: InboundGate) {}

  /** Bytes held for the operation being assembled. */
  get pendingBytes(): number {
    return this.current?.frames ? this.current.bytes : 0;
  }

  /** Takes the next frame; returns the operation it completes, if any. Throws a WireError to end the session. */
  push(frame: Buffer): InboundOperation | undefined {
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
      const keep = this.gate.begin(header.n);
      current = { n: header.n, digest: header.digest, receivedAt: process.hrtime.bigint(), nextChunk: 0, frames: keep ? [] : null, bytes: 0 };
      this.current = current;
    } else {
      if (header.n !== current.n) throw new WireError('MALFORMED', `a frame of operation ${header.n} arrived before operation ${current.n} was complete`);
      if (!header.digest.equals(current.digest)) throw new WireError('MALFORMED', `operation ${current.n} changed its kernel digest mid-operation`);
    }
    if (header.chunk !== current.nextChunk) {
      throw new WireError('MALFORMED', `chunk ${header.chunk} of operation ${current.n} arrived where chunk ${current.nextChunk} was expected`);
    }
    current.nextChunk++;
    if (current.frames !== null) {
      current.bytes += frame.length;
      if (this.gate.grow(current.n, current.bytes)) {
        current.frames.push(frame);
      } else {
        for (const dropped of current.frames) releaseFrame(dropped);
        current.frames = null;
      }
    }
    if (current.frames === null) releaseFrame(frame); // dropped (BUSY): nothing holds it
    if (!header.last) return undefined;
    this.current = undefined;
    if (current.frames === null) return undefined;
    return { n: current.n, digest: current.digest, frames: current.frames, bytes: current.bytes, receivedAt: current.receivedAt };
  }
}
