/**
 * A connection that carries records: each a 4-byte big-endian length and a CBOR body,
 * either an ABE frame (a CBOR array of 3) or a control message (a CBOR map). One record
 * at most is buffered; a length beyond the frame limit ends the connection before anything
 * is allocated for it.
 */
import type { Socket } from 'node:net';
import { FrameReader } from '../abe/frame-reader';
import { ControlMessage, decodeControl, encodeControl } from './control';
import { WireError, toWireError } from './wire-error';

const CBOR_ARRAY_OF_3 = 0x83;

export interface RecordHandlers {
  /** An ABE frame, length prefix included (parse it with abe/frame-codec). */
  onFrame(frame: Buffer): void;
  /** A control message, and the bytes its record took (length prefix included). */
  onControl(message: ControlMessage, bytes: number): void;
  /** The connection ended: cleanly (no error) or on a protocol error or socket failure. */
  onClose(error?: WireError): void;
}

export class RecordConnection {
  private readonly reader = new FrameReader();
  private closed = false;
  private corked = false;
  /** While the socket needs draining: what every send() made meanwhile returns (one 'drain' listener, not one per record). */
  private drained: Promise<void> | undefined;
  private releaseDrained?: () => void;

  constructor(readonly socket: Socket, private readonly handlers: RecordHandlers) {
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('end', () => {
      try {
        this.reader.end();
        this.finish();
      } catch (error) {
        this.finish(toWireError(error));
      }
    });
    socket.on('error', () => this.finish(new WireError('INTERNAL', 'the connection failed')));
    socket.on('close', () => this.finish());
  }

  /**
   * Sends a record (a frame or an encoded control message); resolves when the socket can take
   * more, or once the connection has ended. `written` runs once the socket no longer needs the record's bytes (handed to the
   * kernel, or dropped with the connection); not at all when the connection is already closed.
   */
  send(record: Buffer, written?: () => void): Promise<void> {
    if (this.closed) return Promise.reject(new WireError('INTERNAL', 'the connection is closed'));
    this.batchWrites();
    const ok = this.socket.write(record, written);
    return ok ? Promise.resolve() : this.untilDrained();
  }

  private untilDrained(): Promise<void> {
    this.drained ??= new Promise((resolve) => {
      const release = () => {
        this.socket.off('drain', release);
        this.drained = undefined;
        this.releaseDrained = undefined;
        resolve();
      };
      this.releaseDrained = release;
      this.socket.once('drain', release);
    });
    return this.drained;
  }

  /**
   * Corks the socket until the current turn's callbacks (process.nextTick runs after the
   * promise jobs they queue) have run. A write that fills the socket's buffer still waits
   * for 'drain', which comes once the uncork has flushed it.
   */
  private batchWrites(): void {
    if (this.corked) return;
    this.corked = true;
    this.socket.cork();
    process.nextTick(() => this.flush());
  }

  /** Writes what this turn has sent so far now, rather than at the turn's end (before bookkeeping the peer need not wait for). */
  flush(): void {
    if (!this.corked) return;
    this.corked = false;
    this.socket.uncork();
  }

  sendControl(message: ControlMessage): Promise<void> {
    return this.send(encodeControl(message));
  }

  /** Sends an error message, then closes. Never rejects while the onClose handler does not throw: callers void it, from handlers of peer input. */
  async fail(error: WireError, n?: number): Promise<void> {
    if (!this.closed) {
      let message: Buffer | undefined;
      try {
        message = encodeControl({ t: 'error', code: error.code, reason: error.reason, n, retryAfterMs: error.retryAfterMs });
      } catch {
        // A field beyond what a control message may carry (an n beyond 2^53, say): close without the message.
      }
      if (message === undefined) this.socket.end();
      else this.socket.end(message);
    }
    this.finish(error);
  }

  close(): void {
    this.socket.end();
    this.finish();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  private receive(chunk: Buffer): void {
    if (this.closed) return;
    let records: Buffer[];
    try {
      records = this.reader.push(chunk);
    } catch (error) {
      void this.fail(toWireError(error));
      return;
    }
    for (const record of records) {
      if (this.closed) return;
      try {
        if (record.length > 4 && record[4] === CBOR_ARRAY_OF_3) this.handlers.onFrame(record);
        else this.handlers.onControl(decodeControl(record), record.length);
      } catch (error) {
        void this.fail(toWireError(error));
        return;
      }
    }
  }

  private finish(error?: WireError): void {
    if (this.closed) return;
    this.closed = true;
    this.releaseDrained?.(); // no drain comes after the end: whoever waits for one goes on (and finds the connection closed)
    if (!this.socket.destroyed) this.socket.destroySoon();
    this.handlers.onClose(error);
  }
}
