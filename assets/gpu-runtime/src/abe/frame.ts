/**
 * Sealing and opening the frames of one operation in one direction (ABE.md, "Frames").
 *
 * Under K_n the nonce of a chunk is dir || 000000 || uint64be(chunk), so it is unique as long
 * as no (dir, chunk) pair is sealed twice under the same n. A FrameSealer hands out chunk
 * numbers 0, 1, 2, … itself and never goes back; AbeSession creates at most one sealer per
 * (n, dir). A FrameOpener accepts exactly the next chunk, so a stream it completes is the
 * sealer's stream, whole and in order.
 *
 * Both own their K_n and zeroise it when the operation completes (its last chunk), fails or
 * is aborted. Any refused frame ends the operation: the caller discards what it delivered.
 */
import { AesGcmBackend, AES_KEY_BYTES, activeBackend, openAesGcm, sealAesGcm } from './aes-gcm';
import { AbeError, expectLength, expectUint } from './errors';
import { layOutFrame, parseFrame } from './frame-codec';
import { DIGEST_BYTES, Direction, OperationHeaders, checkDirection, chunkNonce } from './frame-header';
import { SESSION_ID_BYTES } from './key-schedule';
import { MAX_BUFFER_ID, MAX_CHUNK_BYTES, MAX_CHUNKS, MAX_OPERATION } from './limits';
import { ReplayWindow } from './replay-window';

export interface OperationParams {
  /** K_n. Ownership passes to the sealer or opener, which zeroises this very Buffer. */
  readonly key: Buffer;
  readonly session: Buffer;
  readonly n: number;
  readonly dir: Direction;
  /** SHA-384 of the kernel or model the operation runs; every frame carries it. */
  readonly digest: Buffer;
  /** The AES-GCM implementation (default: the addon where built); both give the same bytes. */
  readonly backend?: AesGcmBackend;
  /**
   * Called once if the operation fails or is aborted before it completes, including when
   * these parameters are refused here (AbeSession zeroises its own copy of K_n then). Not
   * called when the operation completes, nor by an abort() after that.
   */
  readonly onFailure?: () => void;
}

type State = 'open' | 'complete' | 'failed';

/** State shared by sealer and opener: the parameters, the next chunk, the key's lifetime. */
abstract class Operation {
  readonly n: number;
  readonly dir: Direction;
  protected readonly key: Buffer;
  protected readonly session: Buffer;
  protected readonly digest: Buffer;
  protected readonly backend: AesGcmBackend;
  protected nextChunk = 0;
  protected state: State = 'open';
  private readonly onFailure: (() => void) | undefined;

  constructor(params: OperationParams) {
    this.key = params.key;
    this.onFailure = params.onFailure;
    try {
      expectLength('key', params.key, AES_KEY_BYTES);
      expectLength('session id', params.session, SESSION_ID_BYTES);
      expectLength('digest', params.digest, DIGEST_BYTES);
      expectUint('operation counter', params.n, MAX_OPERATION);
      checkDirection(params.dir);
    } catch (error) {
      this.key.fill(0);
      this.onFailure?.();
      throw error;
    }
    this.session = Buffer.from(params.session);
    this.digest = Buffer.from(params.digest);
    this.n = params.n;
    this.dir = params.dir;
    this.backend = params.backend ?? activeBackend;
  }

  /** True once the last chunk was sealed or opened. */
  get complete(): boolean {
    return this.state === 'complete';
  }

  /** Ends the operation early: the key is zeroised and nothing more is sealed or opened. */
  abort(): void {
    this.key.fill(0);
    if (this.state === 'open') {
      this.state = 'failed';
      this.onFailure?.();
    }
  }

  protected finishChunk(last: boolean): void {
    this.nextChunk++;
    if (last) {
      this.state = 'complete';
      this.key.fill(0);
    }
  }

  protected ensureOpen(): void {
    if (this.state !== 'open') {
      throw new AbeError('CLOSED', `operation ${this.n} is ${this.state}; its key is gone`);
    }
  }
}

/** Seals the chunks of one operation in one direction, each under a nonce of its own. */
export class FrameSealer extends Operation {
  private readonly headers = new OperationHeaders({ session: this.session, n: this.n, dir: this.dir, digest: this.digest });

  /**
   * Seals `plaintext` (at most MAX_CHUNK_BYTES) as the next chunk of device buffer `buffer`
   * and returns the whole frame, length prefix included. The ciphertext is written straight
   * into the frame; the plaintext is left as it is. With `into` (which must not overlap the
   * plaintext; LENGTH_PREFIX_BYTES + MAX_FRAME_BYTES always suffice) the frame is written at
   * its start and returned as a view of it, so a sender can reuse a few frame buffers
   * instead of allocating one per chunk.
   */
  seal(buffer: number, plaintext: Uint8Array, last: boolean, into?: Buffer): Buffer {
    this.ensureOpen();
    if (plaintext.length > MAX_CHUNK_BYTES) {
      throw new AbeError('TOO_LARGE', `a chunk of ${plaintext.length} bytes exceeds the ${MAX_CHUNK_BYTES}-byte limit; split it`);
    }
    expectUint('buffer id', buffer, MAX_BUFFER_ID);
    if (this.nextChunk >= MAX_CHUNKS) {
      this.abort();
      throw new AbeError('TOO_LARGE', `operation ${this.n} reached the limit of ${MAX_CHUNKS} chunks`);
    }
    const chunk = this.nextChunk;
    const headerBytes = this.headers.encode(buffer, chunk, last);
    const { frame, ciphertext, tag } = layOutFrame(headerBytes, plaintext.length, into);
    try {
      sealAesGcm({ key: this.key, nonce: chunkNonce(this.dir, chunk), aad: headerBytes, input: plaintext, output: ciphertext, tag }, this.backend);
      this.finishChunk(last);
      return frame;
    } catch (error) {
      this.abort(); // whether or not the nonce was used, this operation never seals again
      throw error;
    }
  }
}

/** A chunk opened in place: `plaintext` is a view into the frame it came in. */
export interface OpenedChunk {
  readonly buffer: number;
  readonly chunk: number;
  readonly last: boolean;
  readonly plaintext: Buffer;
}

export interface OpenerParams extends OperationParams {
  /** The session's replay window for this direction. */
  readonly window: ReplayWindow;
}

/** Opens the chunks of one operation in one direction, in order, exactly once each. */
export class FrameOpener extends Operation {
  private readonly window: ReplayWindow;

  /** Throws REPLAY (and zeroises the key) when n is not above the window's last accepted. */
  constructor(params: OpenerParams) {
    super(params);
    this.window = params.window;
    try {
      this.window.check(this.n);
    } catch (error) {
      this.abort();
      throw error;
    }
  }

  /**
   * Checks and decrypts the next frame IN PLACE: its ciphertext bytes become the plaintext.
   * On any refusal the operation fails and its key is zeroised.
   */
  open(frame: Buffer): OpenedChunk {
    try {
      return this.openNext(frame);
    } catch (error) {
      this.abort();
      throw error;
    }
  }

  /** Throws TRUNCATED unless the last chunk was opened; zeroises the key either way. */
  end(): void {
    if (this.state === 'complete') return;
    this.abort();
    throw new AbeError('TRUNCATED', `operation ${this.n} ended after ${this.nextChunk} chunks without its last chunk`);
  }

  private openNext(frame: Buffer): OpenedChunk {
    const { headerBytes, header, ciphertext, tag } = parseFrame(frame);
    if (!header.session.equals(this.session)) {
      throw new AbeError('WRONG_SESSION', `the frame belongs to session ${header.session.toString('hex')}`);
    }
    if (header.dir !== this.dir) {
      throw new AbeError('WRONG_DIRECTION', `the frame was sealed for direction ${header.dir}, this operation opens direction ${this.dir}`);
    }
    if (header.n < this.n) {
      throw new AbeError('REPLAY', `the frame belongs to the earlier operation ${header.n}`);
    }
    if (header.n > this.n) {
      throw new AbeError('OUT_OF_ORDER', `the frame belongs to operation ${header.n}, operation ${this.n} is not complete`);
    }
    if (header.chunk < this.nextChunk) {
      throw new AbeError('REPLAY', `chunk ${header.chunk} of operation ${this.n} was already opened`);
    }
    this.ensureOpen();
    if (header.chunk > this.nextChunk) {
      throw new AbeError('OUT_OF_ORDER', `chunk ${header.chunk} arrived where chunk ${this.nextChunk} was expected`);
    }
    if (!header.digest.equals(this.digest)) {
      throw new AbeError('WRONG_DIGEST', `the frame is for kernel ${header.digest.toString('hex')}, not this operation's`);
    }
    if (this.nextChunk === 0) this.window.check(this.n);
    openAesGcm({ key: this.key, nonce: chunkNonce(this.dir, header.chunk), aad: headerBytes, input: ciphertext, tag }, this.backend);
    if (this.nextChunk === 0) {
      try {
        this.window.accept(this.n); // only authenticated frames move the window
      } catch (error) {
        ciphertext.fill(0); // now plaintext, of an operation that is refused
        throw error;
      }
    }
    this.finishChunk(header.last);
    return { buffer: header.buffer, chunk: header.chunk, last: header.last, plaintext: ciphertext };
  }
}

/**
 * Seals a whole device buffer as consecutive chunks of at most MAX_CHUNK_BYTES (one empty
 * chunk for an empty buffer). `endsOperation` marks the buffer's final chunk as the
 * operation's last. A generator, so only one frame at a time needs to exist.
 */
export function* sealBuffer(sealer: FrameSealer, buffer: number, data: Uint8Array, endsOperation: boolean): Generator<Buffer> {
  let offset = 0;
  do {
    const end = Math.min(offset + MAX_CHUNK_BYTES, data.length);
    yield sealer.seal(buffer, data.subarray(offset, end), endsOperation && end === data.length);
    offset = end;
  } while (offset < data.length);
}
