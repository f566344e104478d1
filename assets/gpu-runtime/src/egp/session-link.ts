/**
 * One ABE session between the EGP and an execution context, over one connection to SGS:
 * the set-up of PROTOCOL.md ("Session set-up"), then operations pipelined in order.
 *
 *   EGP -> SGS {t: open};  SGS -> EGP {t: hello};  EGP -> SGS {t: reply};  SGS -> EGP {t: ready}
 *
 * Operations are numbered 1, 2, 3, ... in this session and answered in that order: result
 * frames for the oldest unanswered one, then {t: done} with its timing. BUSY for operation
 * n means SGS did not take it: its frames (and those of any operation sent after it that
 * SGS refused too) are written again, unchanged, after retryAfterMs, and nothing new is
 * written meanwhile, so SGS sees the operations in order. Any other error, a frame that
 * fails to open, a closed connection or a silent host ends the link: the client then
 * starts a new session and replays.
 */
import type { Socket } from 'node:net';
import type { AesGcmBackend } from '../abe/aes-gcm';
import { EnclaveIdentity, answerHello } from '../abe/handshake';
import { decodeContextHello, encodeEnclaveReply } from '../abe/handshake-messages';
import type { AbeSession } from '../abe/session';
import { ControlMessage, encodeControl } from '../protocol/control';
import { OperationRequest, encodeRequest } from '../protocol/op-descriptor';
import { RecordConnection } from '../protocol/record-connection';
import { Address, connect } from '../protocol/transport';
import { WireError, toWireError } from '../protocol/wire-error';
import { mark, timelineEnabled } from '../timeline';
import { DoneReport, Operation } from './operation';
import { sealOperation } from './operation-sealer';
import { nowUs } from './timing';

export interface LinkOptions {
  readonly address: Address;
  readonly enclave: EnclaveIdentity;
  readonly handshakeTimeoutMs: number;
  /** Nothing received for this long while operations are outstanding: the host is presumed gone. */
  readonly idleTimeoutMs: number;
  /** Data chunk size for htod (at most 1 MiB). */
  readonly chunkBytes: number;
  readonly backend?: AesGcmBackend;
  /** Memory for an operation's sealed frames (the client's pool). */
  readonly allocate?: (size: number) => Buffer;
}

export interface LinkEvents {
  /** The operation's result arrived: its place in the pipeline is free. */
  answered(op: Operation): void;
  /** Its {t: done} arrived, or will not (the session ended, or a later operation was answered first). */
  finished(op: Operation, done: DoneReport | undefined): void;
  /** The session ended on `error`; `unanswered` were sent and not answered, in order. Not called after close(). */
  lost(error: WireError, unanswered: Operation[]): void;
  /** SGS answered BUSY for operation n: it will be sent again after `retryAfterMs`. */
  busy?(n: number, retryAfterMs: number): void;
}

/** An error SGS or the context sent, about operation `n` of the session when it names one. */
export class HostError extends WireError {
  constructor(code: WireError['code'], reason: string, readonly n?: number, retryAfterMs?: number) {
    super(code, n === undefined ? reason : `operation ${n}: ${reason}`, retryAfterMs);
  }
}

/**
 * send() refused the operation before its number was used (its descriptor beyond a limit, or
 * no memory to seal it): the call fails alone, on `refusal`, and the session goes on.
 */
export class SealRefused extends Error {
  constructor(readonly refusal: Error) {
    super(refusal.message);
    this.name = 'SealRefused';
  }
}

/** Longest BUSY back-off honoured, whatever SGS asks for. */
const MAX_RETRY_AFTER_MS = 5_000;

type State = 'await-hello' | 'await-ready' | 'ready' | 'closed';

interface SendState {
  sends: number;
  refusals: number;
}

export class SessionLink {
  /** Opens a connection to SGS and completes the handshake; rejects with a WireError or TransportError. */
  static async open(options: LinkOptions, events: LinkEvents): Promise<SessionLink> {
    const socket = await connect(options.address);
    return new Promise((resolve, reject) => new SessionLink(socket, options, events, resolve, reject));
  }

  private readonly connection: RecordConnection;
  private state: State = 'await-hello';
  private session?: AbeSession;
  private lastN = 0;
  private readonly inFlight: Operation[] = [];
  private answeredOps: Operation[] = [];
  private readonly sendStates = new WeakMap<Operation, SendState>();
  private readonly refused = new Set<Operation>();
  private resendTimer?: NodeJS.Timeout;
  /** True from a BUSY until every refused operation was written again: new operations wait. */
  private holding = false;
  private corked = false;
  private lastHeardAt = Date.now();
  private readonly handshakeTimer: NodeJS.Timeout;
  private watchdog?: NodeJS.Timeout;

  private constructor(
    socket: Socket,
    private readonly options: LinkOptions,
    private readonly events: LinkEvents,
    private readonly opened: (link: SessionLink) => void,
    private readonly refusedToOpen: (error: Error) => void,
  ) {
    this.connection = new RecordConnection(socket, {
      onFrame: (frame) => this.onFrame(frame),
      onControl: (message) => this.onControl(message),
      onClose: (error) => this.end(error ?? new WireError('INTERNAL', 'SGS closed the connection')),
    });
    this.handshakeTimer = setTimeout(() => this.end(new WireError('TIMEOUT', `no session within ${options.handshakeTimeoutMs} ms`)), options.handshakeTimeoutMs);
    this.write(encodeControl({ t: 'open' }));
  }

  /** Operations sent and not yet answered. */
  get outstanding(): number {
    return this.inFlight.length;
  }

  /** The session id, once the context's hello arrived. */
  get sessionId(): Buffer {
    return this.session?.sessionId ?? Buffer.alloc(0);
  }

  get isOpen(): boolean {
    return this.state === 'ready';
  }

  /**
   * Seals the operation as the next of this session and writes it (or holds it while a BUSY
   * resend is pending). Throws SealRefused when the call fails alone (its descriptor beyond a
   * limit, or no memory for its frames): operation n is not used and the session goes on.
   * Any other failure ends the session first; the operation is among the unanswered that
   * `lost` reports, in its place.
   */
  send(op: Operation): void {
    if (this.state !== 'ready') throw new WireError('INTERNAL', 'the session is not open');
    const n = this.lastN + 1;
    op.beginAttempt(n);
    const holding = this.holding;
    const data = op.data;
    const bigOperation = (data?.length ?? 0) > this.options.chunkBytes;
    if (bigOperation) this.uncork(); // let its first frames leave while the rest is sealed
    const start = nowUs();
    if (timelineEnabled()) mark('egp', 'send', this.session!.sessionId, n, `op=${describeRequest(op.spec.request)}`);
    let descriptor: Buffer;
    try {
      descriptor = encodeRequest(op.spec.request);
    } catch (error) {
      throw new SealRefused(error as Error); // beyond a limit (TOO_LARGE): n is not used, nothing is written
    }
    // The frames' memory is allocated before anything is sealed. Once it is, the operation is
    // in flight as operation n, so a failure from there on (n may be spent, frames written)
    // ends the session with the operation reported in order, behind those sent before it.
    let registered = false;
    const allocate = (size: number): Buffer => {
      let space: Buffer;
      try {
        space = (this.options.allocate ?? Buffer.allocUnsafe)(size);
      } catch (error) {
        throw new SealRefused(new WireError('TOO_LARGE', `no memory for its ${size} bytes of sealed frames (${(error as Error).message})`));
      }
      this.lastN = n;
      if (this.inFlight.length === 0) this.lastHeardAt = Date.now(); // idle time before now is not silence
      this.inFlight.push(op);
      this.sendStates.set(op, { sends: holding ? 0 : 1, refusals: 0 });
      registered = true;
      return space;
    };
    try {
      const sealed = sealOperation(this.session!, n, op.spec.request, descriptor, op.spec.digest, data, this.options.chunkBytes, (frame) => {
        if (!holding) this.write(frame, !bigOperation);
      }, allocate);
      op.frames = sealed.frames;
      op.space = sealed.space;
      op.wireBytes = sealed.bytes;
    } catch (error) {
      if (!registered && error instanceof SealRefused) throw error; // nothing of n used: the call fails alone
      if (!registered) this.inFlight.push(op); // so that end() reports it with the unanswered, in its place
      this.end(new WireError('INTERNAL', `sealing ${op.describe()} failed: ${(error as Error).message}`));
      throw error;
    }
    const end = nowUs();
    op.timing.sealUs += end - start;
    op.timing.sentAt = end;
    mark('egp', 'sealed', this.session!.sessionId, n);
  }

  /** Closes the session without reporting it lost; returns what was sent and not answered. */
  close(): Operation[] {
    const unanswered = this.inFlight.splice(0);
    this.shutDown();
    for (const op of this.answeredOps.splice(0)) this.events.finished(op, undefined);
    return unanswered;
  }

  private onFrame(frame: Buffer): void {
    this.lastHeardAt = Date.now();
    if (this.state !== 'ready') throw new WireError('MALFORMED', 'a frame before the session was established');
    const op = this.inFlight[0];
    if (op === undefined) throw new WireError('MALFORMED', 'a result frame with no operation outstanding');
    let complete: boolean;
    try {
      complete = op.receive(this.session!, frame);
    } catch (error) {
      throw toWireError(error); // RecordConnection ends the connection on it, and end() reports it
    }
    if (!complete) return;
    mark('egp', 'answered', this.session!.sessionId, op.n);
    this.inFlight.shift();
    this.refused.delete(op);
    // The context answers in order, {t: done} after each result: earlier operations still
    // waiting for theirs will not get it.
    for (const earlier of this.answeredOps.splice(0)) this.events.finished(earlier, undefined);
    this.answeredOps.push(op);
    this.events.answered(op);
  }

  private onControl(message: ControlMessage): void {
    this.lastHeardAt = Date.now();
    switch (message.t) {
      case 'hello': return this.onHello(message.hello);
      case 'ready': return this.onReady(message.session);
      case 'done': return this.onDone(message);
      case 'error':
        if (message.code === 'BUSY' && message.n !== undefined && this.state === 'ready') return this.onBusy(message.n, message.retryAfterMs ?? 1);
        throw new HostError(message.code, message.reason, message.n, message.retryAfterMs);
      default:
        throw new WireError('MALFORMED', `an unexpected '${message.t}' message`);
    }
  }

  private onHello(helloBytes: Buffer): void {
    if (this.state !== 'await-hello') throw new WireError('MALFORMED', 'an unexpected hello');
    this.state = 'await-ready';
    let hello;
    try {
      hello = decodeContextHello(helloBytes);
    } catch (error) {
      throw toWireError(error);
    }
    answerHello(hello, this.options.enclave, this.options.backend).then(
      ({ reply, session }) => {
        if (this.state !== 'await-ready') {
          session.close();
          return;
        }
        this.session = session;
        this.write(encodeControl({ t: 'reply', reply: encodeEnclaveReply(reply) }));
      },
      (error: unknown) => this.end(toWireError(error)),
    );
  }

  private onReady(sessionId: Buffer): void {
    if (this.state !== 'await-ready' || this.session === undefined || !sessionId.equals(this.session.sessionId)) {
      throw new WireError('MALFORMED', 'an unexpected ready');
    }
    this.state = 'ready';
    clearTimeout(this.handshakeTimer);
    const period = Math.max(10, Math.floor(this.options.idleTimeoutMs / 4));
    this.watchdog = setInterval(() => this.checkSilence(), period);
    this.watchdog.unref();
    this.opened(this);
  }

  private onDone(message: Extract<ControlMessage, { t: 'done' }>): void {
    if (this.state !== 'ready') throw new WireError('MALFORMED', 'done before the session was established');
    const index = this.answeredOps.findIndex((op) => op.n === message.n);
    if (index < 0) {
      if (message.n > this.lastN || this.inFlight.some((op) => op.n === message.n)) {
        throw new WireError('MALFORMED', `done for operation ${message.n}, which has not been answered`);
      }
      return; // already finished without it
    }
    mark('egp', 'done', this.session!.sessionId, message.n);
    const finished = this.answeredOps.splice(0, index + 1);
    const op = finished.pop()!;
    for (const earlier of finished) this.events.finished(earlier, undefined);
    this.events.finished(op, { kernel: message.kernel, codeSha384: message.codeSha384, computeUs: message.computeUs, queueUs: message.queueUs ?? 0 });
  }

  /**
   * SGS refused operation n (its queue for this session is full). SGS answers every send in
   * order and, after a BUSY, refuses everything later until n comes again, so an operation is
   * resent only once each of its sends was refused, and nothing new is written meanwhile.
   */
  private onBusy(n: number, retryAfterMs: number): void {
    const op = this.inFlight.find((candidate) => candidate.n === n);
    const state = op && this.sendStates.get(op);
    if (op === undefined || state === undefined) return; // answered already: stale
    state.refusals++;
    if (state.refusals < state.sends) return; // a later send of it is still on its way
    this.refused.add(op);
    this.holding = true;
    this.events.busy?.(n, retryAfterMs);
    if (this.resendTimer === undefined) {
      const delay = Math.min(Math.max(1, retryAfterMs), MAX_RETRY_AFTER_MS);
      this.resendTimer = setTimeout(() => this.resend(), delay);
    }
  }

  /**
   * Writes the refused operations again, unchanged, in order, followed by those held back. It
   * stops at an operation sent after the first refused one whose BUSY has not arrived yet:
   * writing anything after it would put it out of order (SGS would call it a replay), and its
   * BUSY, when it comes, starts the next resend.
   */
  private resend(): void {
    this.resendTimer = undefined;
    if (this.state !== 'ready') return;
    let wrote = false;
    for (const op of this.inFlight) {
      const state = this.sendStates.get(op)!;
      if (this.refused.has(op) || state.sends === 0) {
        this.refused.delete(op);
        state.sends++;
        for (const frame of op.frames) this.write(frame, false);
        wrote = true;
      } else if (wrote) {
        return; // still holding: wait for its BUSY
      }
    }
    this.holding = this.refused.size > 0;
  }

  private checkSilence(): void {
    const outstanding = this.inFlight.length > 0 || this.answeredOps.length > 0;
    if (outstanding && Date.now() - this.lastHeardAt > this.options.idleTimeoutMs) {
      this.end(new WireError('TIMEOUT', `no answer from the host for ${this.options.idleTimeoutMs} ms`));
    }
  }

  /**
   * Writes a record. Small records written in one tick (an htod, its launch and the dtoh
   * after it) leave in one system call: the socket is corked until the tick ends.
   */
  private write(record: Buffer, batch = true): void {
    if (this.connection.isClosed) return;
    const { socket } = this.connection;
    if (batch && !this.corked) {
      this.corked = true;
      socket.cork();
      process.nextTick(() => this.uncork());
    }
    socket.write(record);
  }

  private uncork(): void {
    if (!this.corked) return;
    this.corked = false;
    this.connection.socket.uncork();
  }

  /** The session is over: report it (as a failed open during the handshake, as lost after). */
  private end(error: WireError): void {
    if (this.state === 'closed') return;
    const wasReady = this.state === 'ready';
    this.shutDown();
    if (!wasReady) {
      this.refusedToOpen(error);
      return;
    }
    for (const op of this.answeredOps.splice(0)) this.events.finished(op, undefined);
    this.events.lost(error, this.inFlight.splice(0));
  }

  private shutDown(): void {
    this.state = 'closed';
    clearTimeout(this.handshakeTimer);
    clearTimeout(this.resendTimer);
    clearInterval(this.watchdog);
    this.resendTimer = undefined;
    this.session?.close();
    if (!this.connection.isClosed) this.connection.close();
  }
}

/** What the timeline calls an operation: its kind, and a launch's kernel. */
function describeRequest(request: OperationRequest): string {
  return request.op === 'launch' ? `launch:${request.kernel}` : request.op;
}
