/**
 * One EGP call on its way through the pipeline: the request, what it needs to be sent again
 * in another session (its data and digest), and the state of its current attempt (operation
 * number, sealed frames, result so far). A call settles exactly once, however many sessions
 * it took.
 */
import type { AbeSession } from '../abe/session';
import type { FrameOpener } from '../abe/frame';
import { HOST_TO_ENCLAVE } from '../abe/frame-header';
import { OperationRequest } from '../protocol/op-descriptor';
import { EgpError } from './errors';
import type { StateChange } from './journal';
import { ResultAssembler } from './result-assembler';
import type { UploadCopy } from './upload-copy';
import { OperationTiming, TimingRecorder, nowUs } from './timing';

/** What {t: done} reported for the operation (absent when the session ended before it came). */
export interface DoneReport {
  readonly kernel: string;
  readonly codeSha384: Buffer;
  readonly computeUs: number;
  readonly queueUs: number;
}

export interface OperationOutcome {
  /** dtoh: the buffer's bytes. */
  readonly output?: Buffer;
  readonly done?: DoneReport;
  readonly timing: OperationTiming;
}

/**
 * app: an application's call; replay: an entry of the journal sent again in a new session;
 * checkpoint: the client's own dtoh of a buffer, journaled as an htod of it.
 */
export type OperationOrigin = 'app' | 'replay' | 'checkpoint';

export interface OperationSpec {
  readonly request: OperationRequest;
  readonly digest: Buffer;
  /** htod from a replay: the journal's bytes. */
  readonly data?: Buffer;
  /** htod from the application: its bytes, and the client's copy of them once made. */
  readonly upload?: UploadCopy;
  /** What to journal when it succeeds (an htod's data is added then: the copy); absent for dtoh. */
  readonly change?: StateChange;
  /** dtoh: the largest result accepted (the buffer's allocated size). */
  readonly maxOutputBytes?: number;
  /** dtoh: memory for a result that must be assembled from several chunks (default: fresh memory). */
  readonly allocateOutput?: (size: number) => Buffer;
}

export class Operation {
  readonly timing = new TimingRecorder();
  readonly promise: Promise<OperationOutcome>;
  /** The operation number in the current session; 0 before it is sent. */
  n = 0;
  /** The sealed frames of the current attempt, kept until its result arrives (BUSY resends them). */
  frames: Buffer[] = [];
  /** The allocation holding `frames`, handed back to the client's pool once they are not needed. */
  space?: Buffer;
  wireBytes = 0;
  private opener?: FrameOpener;
  private assembler?: ResultAssembler;
  private settled = false;
  private resolvePromise!: (outcome: OperationOutcome) => void;
  private rejectPromise!: (error: Error) => void;

  constructor(readonly seq: number, readonly origin: OperationOrigin, readonly spec: OperationSpec) {
    this.promise = new Promise((resolve, reject) => {
      this.resolvePromise = resolve;
      this.rejectPromise = reject;
    });
    // Errors surface at the caller's await, or at synchronize() when it never awaits: never as an unhandled rejection.
    this.promise.catch(() => undefined);
  }

  get request(): OperationRequest {
    return this.spec.request;
  }

  /** htod: the bytes to seal. */
  get data(): Buffer | undefined {
    return this.spec.upload?.bytes ?? this.spec.data;
  }

  /** The result descriptor, once its chunk opened. */
  get result() {
    return this.assembler?.result;
  }

  /** dtoh: the bytes read, once the result is complete. */
  get output(): Buffer | undefined {
    return this.assembler?.output;
  }

  /** Prepares a new attempt in a new session: nothing of the last one carries over. */
  beginAttempt(n: number): void {
    this.opener?.abort();
    this.opener = undefined;
    this.assembler = new ResultAssembler(this.spec.request, this.spec.maxOutputBytes ?? 0, this.spec.allocateOutput);
    this.frames = [];
    this.space = undefined;
    this.wireBytes = 0;
    this.n = n;
    this.timing.restart();
  }

  /** Opens the next result frame (in place) and assembles it; true when the result is complete. */
  receive(session: AbeSession, frame: Buffer): boolean {
    const start = nowUs();
    this.opener ??= session.opener(this.n, HOST_TO_ENCLAVE, this.spec.digest);
    const complete = this.assembler!.accept(this.opener.open(frame));
    const end = nowUs();
    this.timing.openUs += end - start;
    if (complete) {
      this.timing.receivedAt = start;
      this.frames = []; // answered: the frames are not needed for a resend any more
    }
    return complete;
  }

  /**
   * Ends the attempt after its session ended; the frames of the next attempt will be new.
   * Their memory is left to the collector: a write of the closed socket may still hold it.
   */
  abandonAttempt(): void {
    this.opener?.abort();
    this.opener = undefined;
    this.frames = [];
    this.space = undefined;
  }

  /** The sealed frames' memory, once the operation was answered (so no resend needs it). */
  takeSpace(): Buffer | undefined {
    if (this.frames.length > 0) return undefined;
    const space = this.space;
    this.space = undefined;
    return space;
  }

  /** Settles the call from its result (a failed result rejects it); returns its timing. */
  resolve(done: DoneReport | undefined): OperationTiming | undefined {
    if (this.settled) return undefined;
    this.settled = true;
    if (done !== undefined) {
      this.timing.queueUs = done.queueUs;
      this.timing.computeUs = done.computeUs;
    }
    const timing = this.timing.finish();
    const result = this.assembler?.result;
    if (result !== undefined && !result.ok) {
      this.rejectPromise(new EgpError('OPERATION_FAILED', `${this.describe()}: ${result.code}: ${result.reason}`, result.code));
    } else {
      this.resolvePromise({ output: this.assembler?.output, done, timing });
    }
    return timing;
  }

  reject(error: Error): void {
    if (this.settled) return;
    this.settled = true;
    this.opener?.abort();
    this.frames = [];
    this.space = undefined;
    this.rejectPromise(error);
  }

  describe(): string {
    const { request } = this.spec;
    return request.op === 'launch' ? `launch ${request.kernel}` : `${request.op} of buffer ${request.buffer}`;
  }
}
