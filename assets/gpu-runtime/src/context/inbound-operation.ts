/**
 * One operation as it arrives (direction 0): its frames opened in order under K_n, chunk 0
 * decoded as the request, and for htod the data chunks written straight into the target
 * buffer as they open.
 *
 * Two kinds of trouble, handled differently (PROTOCOL.md, "Errors"):
 * - a frame that does not open (forged, replayed, out of order, wrong digest) throws an
 *   AbeError: the session ends, because the stream can no longer be trusted;
 * - an authenticated operation that asks for something wrong (an undecodable request, data
 *   chunks where none belong, for the wrong buffer, too many or too few bytes) is recorded
 *   as `failure`: the remaining chunks are still opened (so the stream stays in step) and
 *   discarded, and the operation is answered {ok: false}. A failed htod may have written
 *   part of its data.
 */
import { FrameHeader, ENCLAVE_TO_HOST } from '../abe/frame-header';
import { FrameOpener, OpenedChunk } from '../abe/frame';
import { AbeSession } from '../abe/session';
import { OperationError } from '../kernels/operation-error';
import { isNoCodeDigest } from '../kernels/registry';
import { DESCRIPTOR_BUFFER, OperationRequest, decodeRequest } from '../protocol/op-descriptor';
import { WireError } from '../protocol/wire-error';
import { DeviceMemory } from './device-memory';

export class InboundOperation {
  readonly n: number;
  /** The digest every frame of the operation carries: the code it claims to run. */
  readonly digest: Buffer;
  request?: OperationRequest;
  failure?: OperationError;
  private readonly opener: FrameOpener;
  /** htod only: where the data goes, and how much has arrived. */
  private target?: Buffer;
  private written = 0;

  /** Throws REPLAY (AbeError) when `header.n` is not above the last operation accepted. */
  constructor(session: AbeSession, header: FrameHeader) {
    this.n = header.n;
    this.digest = header.digest;
    this.opener = session.opener(header.n, ENCLAVE_TO_HOST, header.digest);
  }

  /** Opens the operation's next frame; returns true when it was the last. */
  accept(frame: Buffer, memory: DeviceMemory): boolean {
    const chunk = this.opener.open(frame);
    try {
      if (chunk.chunk === 0) this.begin(chunk, memory);
      else this.data(chunk);
      if (chunk.last) this.end();
    } finally {
      chunk.plaintext.fill(0); // the frame's bytes are plaintext now; the data lives on only in its buffer
    }
    return chunk.last;
  }

  /** Zeroises K_n (the session is ending with the operation incomplete). */
  abort(): void {
    this.opener.abort();
  }

  private begin(chunk: OpenedChunk, memory: DeviceMemory): void {
    if (chunk.buffer !== DESCRIPTOR_BUFFER) {
      this.fail(`chunk 0 carries the request and belongs to buffer ${DESCRIPTOR_BUFFER}, not ${chunk.buffer}`);
      return;
    }
    try {
      this.request = decodeRequest(chunk.plaintext);
    } catch (error) {
      if (!(error instanceof WireError)) throw error;
      this.fail(`the request does not decode: ${error.reason}`);
      return;
    }
    if (this.request.op !== 'launch' && !isNoCodeDigest(this.digest)) {
      this.failure = new OperationError('DIGEST_MISMATCH', `a ${this.request.op} runs no code: its frames must carry 48 zero bytes as the digest`);
      return;
    }
    if (this.request.op === 'htod') {
      try {
        this.target = memory.write(this.request.buffer);
      } catch (error) {
        if (!(error instanceof OperationError)) throw error;
        this.failure = error;
        return;
      }
      if (this.request.size > this.target.length) {
        this.fail(`htod of ${this.request.size} bytes into buffer ${this.request.buffer} of ${this.target.length} bytes`);
      }
    } else if (!chunk.last) {
      this.fail(`a ${this.request.op} request carries no data chunks`);
    }
  }

  private data(chunk: OpenedChunk): void {
    if (this.failure || this.request?.op !== 'htod' || !this.target) return;
    if (chunk.buffer !== this.request.buffer) {
      this.fail(`a data chunk for buffer ${chunk.buffer} in an htod to buffer ${this.request.buffer}`);
    } else if (this.written + chunk.plaintext.length > this.request.size) {
      this.fail(`htod data runs past the ${this.request.size} bytes announced`);
    } else {
      chunk.plaintext.copy(this.target, this.written);
      this.written += chunk.plaintext.length;
    }
  }

  private end(): void {
    this.target = undefined;
    if (!this.failure && this.request?.op === 'htod' && this.written !== this.request.size) {
      this.fail(`htod ended after ${this.written} of the ${this.request.size} bytes announced`);
    }
  }

  private fail(reason: string): void {
    this.failure ??= new OperationError('BAD_REQUEST', reason);
  }
}
