/**
 * The operations of one ready session, from the EGP's frames to the context's {t: done}:
 *
 *   EGP frames -> InboundAssembler -> begin/append (this gate: REPLAY, BUSY, TOO_LARGE)
 *     -> queue (bounded: queueBound operations, memoryCapBytes of ciphertext held)
 *     -> FairScheduler -> dispatchNext: frames to the context, deadline armed
 *     -> result frames (in order, for the oldest operation in flight) -> EGP
 *     -> {t: done}: queueUs added, metrics, kernel-attestation record, slot released
 *
 * Cut-through: an operation may go to the context as soon as its first frame is here, when it
 * is at the front of the queue and the scheduler has a slot for it. Its frames already here
 * go at once and the rest follow as they arrive, so a large upload streams through SGS
 * (sealing in the enclave, relaying here and opening at the context overlap) instead of
 * waiting here whole. Forwarded frames are not held, so they count against no budget; the
 * context still has a deadline for the whole operation and bounds its own memory. The frames
 * held here stay in the shared budget after dispatch until the socket to the context has
 * written them (or dropped them with the connection): while the context does not read, they
 * are still SGS's memory.
 *
 * Operations stay in order: the queue is FIFO, results must come for the oldest operation in
 * flight, and after a BUSY for operation n nothing later is queued before n is resent. Only
 * an operation still held here can be refused BUSY: once its first frames reached the
 * context, its number is spent there.
 */
import { releaseFrame } from '../abe/frame-pool';
import { ControlMessage } from '../protocol/control';
import { WireError } from '../protocol/wire-error';
import { CiphertextBudget } from './ciphertext-budget';
import { PartitionConfig } from './config';
import { InboundGate } from './inbound-assembler';

/** A refusal that ends the session, about operation n. */
export class OperationError extends WireError {
  constructor(code: WireError['code'], reason: string, readonly n: number) {
    super(code, reason);
  }
}

interface Operation {
  readonly n: number;
  readonly digest: Buffer;
  /** Frames held here, not yet sent to the context (reserved in the budget, until written to the context). */
  frames: Buffer[];
  /** Bytes of `frames`. */
  heldBytes: number;
  /** Bytes of all its frames so far, held or forwarded. */
  bytes: number;
  /** Its last frame arrived. */
  complete: boolean;
  readonly receivedAt: bigint;
  /** 0n until it goes to the context. */
  dispatchedAt: bigint;
}

/** What completed, for metrics and the kernel-attestation log. */
export interface CompletedOperation {
  readonly n: number;
  /** The header digest the enclave sent: zeros unless the operation is a launch. */
  readonly digest: Buffer;
  readonly latencyMs: number;
  readonly done: Extract<ControlMessage, { t: 'done' }>;
}

export interface PipelineHost {
  /**
   * Writes an operation's frames to the context; `written` (if given) gets each frame's length
   * once the socket no longer holds it (handed to the kernel, or dropped with the connection).
   */
  sendToContext(frames: readonly Buffer[], written?: (bytes: number) => void): void;
  /** Sends a control message (BUSY, done) to the EGP. */
  sendToEnclave(message: ControlMessage): void;
  /** Ends the session (deadline missed). */
  expire(error: OperationError): void;
  /** Queue-depth changes and replays, for metrics. */
  queued(delta: number): void;
  replayed(): void;
  completed(operation: CompletedOperation): void;
}

const MAX_RETRY_AFTER_MS = 1000;

export class OperationPipeline implements InboundGate {
  /** Operations not yet at the context, oldest first; the last may still be arriving. */
  private queue: Operation[] = [];
  /** Bytes held by queued operations, this session's (memoryCapBytes) and reserved in the shared budget. */
  private queuedBytes = 0;
  /** The operation whose frames are arriving: queued, or at the context already (cut-through). */
  private arriving: Operation | undefined;
  private readonly inFlight: Operation[] = [];
  /** The highest n whose last frame arrived; a new operation's n must be above it. Operation numbers start at 1. */
  private lastAccepted = 0;
  /** The oldest operation answered BUSY and not yet resent: later ones wait behind it. */
  private busyFrom: number | undefined;
  private deadline: NodeJS.Timeout | undefined;
  /** Average time at the context per operation (ms), for retryAfterMs. */
  private serviceMs = 1;
  private draining = false;

  constructor(
    private readonly host: PipelineHost,
    private readonly partition: PartitionConfig,
    private readonly deadlineMs: number,
    private readonly budget: CiphertextBudget,
  ) {}

  get queuedOperations(): number {
    return this.queue.length;
  }

  get inFlightOperations(): number {
    return this.inFlight.length;
  }

  // InboundGate: decisions as an operation arrives.

  begin(n: number, digest: Buffer, receivedAt: bigint): boolean {
    if (n <= this.lastAccepted) {
      this.host.replayed();
      throw new OperationError('REPLAY', `operation ${n} is not above the last operation accepted, ${this.lastAccepted}`, n);
    }
    if (this.draining) return this.busy(n, 'SGS is shutting down; resend on a new session');
    if (this.busyFrom !== undefined && n !== this.busyFrom) return this.busy(n, `operation ${this.busyFrom} must be resent first`);
    if (this.queue.length >= this.partition.queueBound) return this.busy(n, `the session's queue holds ${this.queue.length} operations, its bound`);
    this.busyFrom = undefined;
    const operation: Operation = { n, digest, frames: [], heldBytes: 0, bytes: 0, complete: false, receivedAt, dispatchedAt: 0n };
    this.arriving = operation;
    this.queue.push(operation);
    this.host.queued(+1);
    return true;
  }

  append(frame: Buffer, last: boolean): boolean {
    const operation = this.arriving!;
    operation.bytes += frame.length;
    if (operation.bytes > this.partition.memoryCapBytes) {
      throw new OperationError('TOO_LARGE', `operation ${operation.n} exceeds the partition's ${this.partition.memoryCapBytes}-byte cap on queued ciphertext`, operation.n);
    }
    if (operation.dispatchedAt !== 0n) {
      this.host.sendToContext([frame]); // cut-through: the operation is at the context already
    } else {
      if (this.queuedBytes + frame.length > this.partition.memoryCapBytes) {
        return this.dropArriving(`the session's queue holds ${this.queuedBytes} bytes; operation ${operation.n} does not fit under its ${this.partition.memoryCapBytes}-byte cap`);
      }
      if (!this.budget.reserve(frame.length)) return this.dropArriving('SGS holds as much queued ciphertext as it may, all sessions together');
      operation.frames.push(frame);
      operation.heldBytes += frame.length;
      this.queuedBytes += frame.length;
    }
    if (last) {
      operation.complete = true;
      this.arriving = undefined;
      this.lastAccepted = operation.n;
    }
    return true;
  }

  /** True when the queue's front can go to the context (whole, or begun: cut-through). */
  hasQueued(): boolean {
    return this.queue.length > 0;
  }

  /**
   * Sends the oldest queued operation (the frames of it that are here) to the context and
   * starts its deadline; returns its number, undefined when none was queued.
   */
  dispatchNext(): number | undefined {
    const operation = this.queue.shift();
    if (operation === undefined) return undefined;
    this.queuedBytes -= operation.heldBytes;
    operation.heldBytes = 0;
    this.host.queued(-1);
    operation.dispatchedAt = process.hrtime.bigint();
    this.inFlight.push(operation);
    if (this.inFlight.length === 1) this.armDeadline();
    const frames = operation.frames;
    operation.frames = [];
    // Out of the session's queue, but still SGS's memory until its socket to the context has
    // written them: they stay in the shared budget until then (even after the session ends).
    this.host.sendToContext(frames, (bytes) => this.budget.release(bytes));
    return operation.n;
  }

  /** Checks that a result frame from the context is for the oldest operation in flight, all of whose frames it has. */
  checkResult(n: number): void {
    const head = this.inFlight[0];
    if (head === undefined || head.n !== n) {
      throw new WireError('INTERNAL', `the context sent results for operation ${n}, ${head ? `operation ${head.n} is due` : 'none is in flight'}`);
    }
    if (!head.complete) throw new WireError('INTERNAL', `the context answered operation ${n} before all its frames arrived`);
  }

  /**
   * The context's {t: done} for the oldest operation in flight: forwarded with queueUs and
   * without device (for SGS's metrics and log only: an enclave image built before the field
   * existed refuses a message with a field it does not know).
   */
  complete(done: Extract<ControlMessage, { t: 'done' }>): void {
    this.checkResult(done.n);
    const operation = this.inFlight.shift()!;
    const now = process.hrtime.bigint();
    const serviceMs = Number(now - operation.dispatchedAt) / 1e6;
    this.serviceMs = 0.8 * this.serviceMs + 0.2 * serviceMs;
    const queueUs = Number((operation.dispatchedAt - operation.receivedAt) / 1000n);
    this.host.sendToEnclave({ t: 'done', n: done.n, kernel: done.kernel, codeSha384: done.codeSha384, computeUs: done.computeUs, queueUs });
    this.armDeadline();
    this.host.completed({ n: operation.n, digest: operation.digest, latencyMs: Number(now - operation.receivedAt) / 1e6, done });
  }

  /** From now on new operations are refused BUSY; what is queued and in flight still completes. */
  drain(): void {
    this.draining = true;
  }

  /** Nothing arriving, queued or in flight. */
  get idle(): boolean {
    return this.arriving === undefined && this.queue.length === 0 && this.inFlight.length === 0;
  }

  /** The oldest operation in flight, if any (for errors that end the session). */
  get headInFlight(): number | undefined {
    return this.inFlight[0]?.n;
  }

  /** Drops everything; returns how many operations were queued. */
  close(): number {
    clearTimeout(this.deadline);
    const queued = this.queue.length;
    this.budget.release(this.queuedBytes);
    this.queue = [];
    this.queuedBytes = 0;
    this.arriving = undefined;
    this.inFlight.length = 0;
    return queued;
  }

  /** Refuses the operation arriving (still queued here): BUSY, its frames let go. */
  private dropArriving(reason: string): false {
    const operation = this.arriving!;
    this.arriving = undefined;
    this.queue.pop(); // the arriving operation is the newest queued
    this.queuedBytes -= operation.heldBytes;
    this.budget.release(operation.heldBytes);
    for (const frame of operation.frames) releaseFrame(frame);
    operation.frames = [];
    this.host.queued(-1);
    return this.busy(operation.n, reason);
  }

  private busy(n: number, reason: string): false {
    this.busyFrom ??= n;
    const retryAfterMs = Math.min(MAX_RETRY_AFTER_MS, Math.max(1, Math.ceil(this.serviceMs * Math.max(1, this.queue.length))));
    this.host.sendToEnclave({ t: 'error', code: 'BUSY', reason, n, retryAfterMs });
    return false;
  }
  /** One timer, for the oldest operation in flight: operations complete in order, so it is due first. */
  private armDeadline(): void {
    clearTimeout(this.deadline);
    this.deadline = undefined;
    const head = this.inFlight[0];
    if (head === undefined) return;
    const elapsedMs = Number(process.hrtime.bigint() - head.dispatchedAt) / 1e6;
    this.deadline = setTimeout(() => {
      this.host.expire(new OperationError('TIMEOUT', `operation ${head.n} did not complete within ${this.deadlineMs} ms`, head.n));
    }, Math.max(0, this.deadlineMs - elapsedMs));
  }
}
