/**
 * The operations of one ready session, from the EGP's last frame to the context's {t: done}:
 *
 *   EGP frames -> InboundAssembler -> begin/grow (this gate: REPLAY, BUSY, TOO_LARGE)
 *     -> queue (bounded: queueBound operations, memoryCapBytes of ciphertext)
 *     -> FairScheduler -> dispatchNext: frames to the context, deadline armed
 *     -> result frames (in order, for the oldest operation in flight) -> EGP
 *     -> {t: done}: queueUs added, metrics, kernel-attestation record, slot released
 *
 * Operations stay in order: the queue is FIFO, results must come for the oldest operation in
 * flight, and after a BUSY for operation n nothing later is queued before n is resent.
 */
import { ControlMessage } from '../protocol/control';
import { WireError } from '../protocol/wire-error';
import { CiphertextBudget } from './ciphertext-budget';
import { PartitionConfig } from './config';
import { InboundGate, InboundOperation } from './inbound-assembler';

/** A refusal that ends the session, about operation n. */
export class OperationError extends WireError {
  constructor(code: WireError['code'], reason: string, readonly n: number) {
    super(code, reason);
  }
}

interface Operation {
  readonly n: number;
  readonly digest: Buffer;
  /** Emptied once the frames went to the context. */
  frames: Buffer[];
  readonly bytes: number;
  readonly receivedAt: bigint;
  readonly queuedAt: bigint;
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
  /** Writes an operation's frames to the context. */
  sendToContext(frames: readonly Buffer[]): void;
  /** Sends a control message (BUSY, done) to the EGP. */
  sendToEnclave(message: ControlMessage): void;
  /** Ends the session (deadline missed). */
  expire(error: OperationError): void;
  /** Queue-depth changes and replays, for metrics. */
  queued(delta: number): void;
  replayed(): void;
  completed(operation: CompletedOperation): void;
}

const ZERO_DIGEST = Buffer.alloc(48);
const MAX_RETRY_AFTER_MS = 1000;

export class OperationPipeline implements InboundGate {
  private queue: Operation[] = [];
  private queuedBytes = 0;
  /** Bytes of the operation being assembled, reserved in the shared budget. */
  private assemblingBytes = 0;
  private readonly inFlight: Operation[] = [];
  /** The highest n queued; a new operation's n must be above it. Operation numbers start at 1. */
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

  static isLaunch(digest: Buffer): boolean {
    return !digest.equals(ZERO_DIGEST);
  }

  // InboundGate: decisions as an operation arrives.

  begin(n: number): boolean {
    if (n <= this.lastAccepted) {
      this.host.replayed();
      throw new OperationError('REPLAY', `operation ${n} is not above the last operation accepted, ${this.lastAccepted}`, n);
    }
    if (this.draining) return this.busy(n, 'SGS is shutting down; resend on a new session');
    if (this.busyFrom !== undefined && n !== this.busyFrom) return this.busy(n, `operation ${this.busyFrom} must be resent first`);
    if (this.queue.length >= this.partition.queueBound) return this.busy(n, `the session's queue holds ${this.queue.length} operations, its bound`);
    this.busyFrom = undefined;
    return true;
  }

  grow(n: number, bytes: number): boolean {
    if (bytes > this.partition.memoryCapBytes) {
      throw new OperationError('TOO_LARGE', `operation ${n} exceeds the partition's ${this.partition.memoryCapBytes}-byte cap on queued ciphertext`, n);
    }
    if (this.queuedBytes + bytes > this.partition.memoryCapBytes) {
      this.dropAssembling();
      return this.busy(n, `the session's queue holds ${this.queuedBytes} bytes; operation ${n} does not fit under its ${this.partition.memoryCapBytes}-byte cap`);
    }
    if (!this.budget.reserve(bytes - this.assemblingBytes)) {
      this.dropAssembling();
      return this.busy(n, 'SGS holds as much queued ciphertext as it may, all sessions together');
    }
    this.assemblingBytes = bytes;
    return true;
  }

  /** A whole operation arrived: it joins the queue (the scheduler is told by the caller). */
  accept(operation: InboundOperation): void {
    this.assemblingBytes = 0; // now queued bytes, still reserved until dispatched
    this.lastAccepted = operation.n;
    this.queue.push({ ...operation, frames: operation.frames, queuedAt: process.hrtime.bigint(), dispatchedAt: 0n });
    this.queuedBytes += operation.bytes;
    this.host.queued(+1);
  }

  hasQueued(): boolean {
    return this.queue.length > 0;
  }

  /** Sends the oldest queued operation to the context and starts its deadline. */
  dispatchNext(): void {
    const operation = this.queue.shift();
    if (operation === undefined) return;
    this.queuedBytes -= operation.bytes;
    this.budget.release(operation.bytes);
    this.host.queued(-1);
    operation.dispatchedAt = process.hrtime.bigint();
    this.inFlight.push(operation);
    if (this.inFlight.length === 1) this.armDeadline();
    const frames = operation.frames;
    operation.frames = [];
    this.host.sendToContext(frames);
  }

  /** Checks that a result frame from the context is for the oldest operation in flight. */
  checkResult(n: number): void {
    const head = this.inFlight[0];
    if (head === undefined || head.n !== n) {
      throw new WireError('INTERNAL', `the context sent results for operation ${n}, ${head ? `operation ${head.n} is due` : 'none is in flight'}`);
    }
  }

  /** The context's {t: done} for the oldest operation in flight: forwarded with queueUs. */
  complete(done: Extract<ControlMessage, { t: 'done' }>): void {
    this.checkResult(done.n);
    const operation = this.inFlight.shift()!;
    const now = process.hrtime.bigint();
    const serviceMs = Number(now - operation.dispatchedAt) / 1e6;
    this.serviceMs = 0.8 * this.serviceMs + 0.2 * serviceMs;
    const queueUs = Number((operation.dispatchedAt - operation.queuedAt) / 1000n);
    this.host.sendToEnclave({ ...done, queueUs });
    this.armDeadline();
    this.host.completed({ n: operation.n, digest: operation.digest, latencyMs: Number(now - operation.receivedAt) / 1e6, done });
  }

  /** From now on new operations are refused BUSY; what is queued and in flight still completes. */
  drain(): void {
    this.draining = true;
  }

  /** Nothing queued and nothing in flight. */
  get idle(): boolean {
    return this.queue.length === 0 && this.inFlight.length === 0;
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
    this.dropAssembling();
    this.queue = [];
    this.queuedBytes = 0;
    this.inFlight.length = 0;
    return queued;
  }

  private dropAssembling(): void {
    this.budget.release(this.assemblingBytes);
    this.assemblingBytes = 0;
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
