/**
 * One session: an EGP connection on the enclave link and the connection SGS opens to the
 * execution context for it (PROTOCOL.md, "Session set-up" and "Operations").
 *
 *   await-open   EGP {t: open}            -> connect to the context, {t: hello-request}
 *   await-hello  context {t: hello}       -> relayed to the EGP
 *   await-reply  EGP {t: reply}           -> admitEnclave (root, nonce, allowlist), relayed to the context
 *   await-ready  context {t: ready}       -> relayed; the session joins the scheduler
 *   ready        frames both ways, {t: done} from the context
 *
 * SGS holds the hello and the reply, both public, and ciphertext frames; never a key. Every
 * refusal is a typed WireError to the EGP; any error but BUSY ends the session, and with it
 * the context connection (the context then drops the session's keys).
 */
import type { Socket } from 'node:net';
import { parseFrame } from '../abe/frame-codec';
import { releaseFrame } from '../abe/frame-pool';
import { HOST_TO_ENCLAVE, isLaunchDigest } from '../abe/frame-header';
import { ContextHello, decodeContextHello } from '../abe/handshake-messages';
import { ControlMessage } from '../protocol/control';
import { RecordConnection } from '../protocol/record-connection';
import { destroyAfter } from '../protocol/refused-connections';
import { connect } from '../protocol/transport';
import { WireError, toWireError } from '../protocol/wire-error';
import { mark, timelineEnabled } from '../timeline';
import { AdmittedEnclave, admitEnclave } from './admission';
import { InboundAssembler } from './inbound-assembler';
import { CompletedOperation, OperationError, OperationPipeline } from './operation-pipeline';
import { SessionServices } from './session-services';

type State = 'await-open' | 'await-hello' | 'await-reply' | 'await-ready' | 'ready' | 'closed';

export class SgsSession {
  private state: State = 'await-open';
  private readonly egp: RecordConnection;
  private context: RecordConnection | undefined;
  private hello: ContextHello | undefined;
  private admitted: AdmittedEnclave | undefined;
  private inbound: InboundAssembler | undefined;
  private pipeline: OperationPipeline | undefined;
  /** Session set-up must finish within handshakeTimeoutMs; afterwards the pipeline keeps operation deadlines. */
  private setupTimer: NodeJS.Timeout | undefined;
  private draining = false;

  constructor(socket: Socket, private readonly services: SessionServices) {
    this.egp = new RecordConnection(socket, {
      onFrame: (frame) => this.guard(() => this.fromEnclaveFrame(frame)),
      onControl: (message) => this.guard(() => this.fromEnclaveControl(message)),
      onClose: () => this.end(),
    });
    const { handshakeTimeoutMs } = services.config;
    this.setupTimer = setTimeout(() => this.end(new WireError('TIMEOUT', `the session was not set up within ${handshakeTimeoutMs} ms`)), handshakeTimeoutMs);
  }

  /** The partition whose slots this session's operations take (the scheduler reads it). */
  get partition(): string {
    return this.admitted?.partition ?? '';
  }

  get queuedOperations(): number {
    return this.pipeline?.queuedOperations ?? 0;
  }

  get closed(): boolean {
    return this.state === 'closed';
  }

  hasQueued(): boolean {
    return this.state === 'ready' && this.pipeline!.hasQueued();
  }

  dispatchNext(): void {
    if (this.state !== 'ready') return;
    const n = this.pipeline!.dispatchNext();
    if (n !== undefined) mark('sgs', 'dispatch', this.hello!.sessionId, n);
  }

  /**
   * SIGTERM: a session still being set up ends now; a ready one finishes what it has queued
   * and in flight (new operations are answered BUSY) and then ends cleanly, so its EGP opens
   * a new session elsewhere and resends what was refused.
   */
  drain(): void {
    if (this.state === 'closed') return;
    if (this.state !== 'ready') {
      this.end(new WireError('INTERNAL', 'SGS is shutting down'));
      return;
    }
    this.draining = true;
    this.pipeline!.drain();
    this.endIfDrained();
  }

  /** Ends the session: the error (if any) to the EGP, both connections closed, slots freed. */
  end(error?: WireError, n?: number): void {
    if (this.state === 'closed') return;
    const wasReady = this.state === 'ready';
    this.state = 'closed';
    clearTimeout(this.setupTimer);
    if (error) void this.egp.fail(error, n);
    else this.egp.close();
    this.context?.close();
    // The final error record (and what was already sent) leaves while the peer reads; one that
    // does not read keeps neither the sockets, their descriptors nor their buffered bytes.
    destroyAfter([this.egp.socket, ...(this.context ? [this.context.socket] : [])]);
    if (this.pipeline) {
      const queued = this.pipeline.close();
      if (queued > 0) this.services.metrics.queued(this.admitted!.enclaveImage, -queued);
    }
    if (wasReady) {
      this.services.scheduler.remove(this);
      this.services.metrics.sessionClosed(this.admitted!.enclaveImage);
    }
    if (error && error.code !== 'BUSY') this.services.log(`sgs: session ${this.label()} ended: ${error.code}: ${error.reason}`);
    this.services.sessionClosed(this);
  }


  // Enclave side.

  private fromEnclaveControl(message: ControlMessage): void {
    if (this.state === 'await-open' && message.t === 'open') {
      this.state = 'await-hello';
      void this.openContext();
    } else if (this.state === 'await-reply' && message.t === 'reply') {
      this.admit(message.reply);
    } else {
      throw new WireError('MALFORMED', `a '${message.t}' message is not expected ${this.stateDescription()}`);
    }
  }

  private fromEnclaveFrame(frame: Buffer): void {
    if (this.state !== 'ready') throw new WireError('MALFORMED', `a frame is not expected ${this.stateDescription()}`);
    this.services.metrics.bytesIn(this.admitted!.enclaveImage, frame.length);
    const begins = !this.inbound!.midOperation;
    const ends = this.inbound!.push(frame);
    if (timelineEnabled() && (begins || ends)) {
      const { n } = parseFrame(frame).header;
      if (begins) mark('sgs', 'begin', this.hello!.sessionId, n);
      if (ends) mark('sgs', 'arrived', this.hello!.sessionId, n);
    }
    // The front operation may go to the context at its first frame (cut-through); later frames
    // change nothing the scheduler looks at, and a slot that frees pumps it itself.
    if (begins && this.pipeline!.hasQueued()) this.services.scheduler.pump();
    this.endIfDrained();
  }

  private admit(reply: Buffer): void {
    try {
      this.admitted = admitEnclave(reply, this.hello!, this.services.config);
    } catch (error) {
      // A refused enclave cannot be attributed to its claimed image (the claim is what failed), so the
      // failure counts for the images this SGS serves: their alarms are the ones that should fire.
      for (const image of this.services.servedImages) this.services.metrics.attestationFailure(image);
      throw error;
    }
    this.state = 'await-ready';
    this.sendToContext({ t: 'reply', reply });
  }

  // Context side.

  private async openContext(): Promise<void> {
    let socket: Socket;
    try {
      socket = await connect(this.services.config.context);
    } catch (error) {
      this.services.log(`sgs: ${(error as Error).message}`);
      this.end(new WireError('INTERNAL', 'the execution context is not available'));
      return;
    }
    if (this.state === 'closed') {
      socket.destroy();
      return;
    }
    this.context = new RecordConnection(socket, {
      onFrame: (frame) => this.guardContext(() => this.fromContextFrame(frame)),
      onControl: (message) => this.guardContext(() => this.fromContextControl(message)),
      onClose: (error) => {
        if (this.state !== 'closed') {
          this.services.log(`sgs: session ${this.label()}: the context connection closed${error ? ` (${error.code}: ${error.reason})` : ''}`);
          this.end(new WireError('INTERNAL', 'the execution context closed the session'), this.pipeline?.headInFlight);
        }
      },
    });
    this.sendToContext({ t: 'hello-request' });
  }

  private fromContextControl(message: ControlMessage): void {
    if (message.t === 'error') {
      this.fromContextError(message);
    } else if (this.state === 'await-hello' && message.t === 'hello') {
      this.hello = decodeContextHello(message.hello);
      this.state = 'await-reply';
      this.sendToEnclave({ t: 'hello', hello: message.hello });
    } else if (this.state === 'await-ready' && message.t === 'ready') {
      if (!message.session.equals(this.hello!.sessionId)) throw new WireError('INTERNAL', 'the context declared another session ready');
      this.becomeReady();
      this.sendToEnclave(message);
    } else if (this.state === 'ready' && message.t === 'done') {
      mark('sgs', 'done', this.hello!.sessionId, message.n);
      this.pipeline!.complete(message);
      this.endIfDrained();
    } else {
      throw new WireError('INTERNAL', `the context sent a '${message.t}' message ${this.stateDescription()}`);
    }
  }

  private fromContextFrame(frame: Buffer): void {
    if (this.state !== 'ready') throw new WireError('INTERNAL', `the context sent a frame ${this.stateDescription()}`);
    const { header } = parseFrame(frame);
    if (header.dir !== HOST_TO_ENCLAVE || !header.session.equals(this.hello!.sessionId)) {
      throw new WireError('INTERNAL', 'the context sent a frame of the wrong direction or session');
    }
    this.pipeline!.checkResult(header.n);
    mark('sgs', 'result', header.session, header.n);
    this.services.metrics.bytesOut(this.admitted!.enclaveImage, frame.length);
    this.relayToEnclave(frame);
  }

  /** The context refused or failed: its code goes to the EGP (BUSY is SGS's alone, so it becomes INTERNAL). */
  private fromContextError(message: Extract<ControlMessage, { t: 'error' }>): void {
    if (message.code === 'UNAUTHORIZED') {
      for (const image of this.services.servedImages) this.services.metrics.attestationFailure(image);
    }
    const code = message.code === 'BUSY' ? 'INTERNAL' : message.code;
    this.end(new WireError(code, `execution context: ${message.reason}`), message.n);
  }

  private becomeReady(): void {
    const admitted = this.admitted!;
    clearTimeout(this.setupTimer);
    this.state = 'ready';
    const { services } = this;
    this.pipeline = new OperationPipeline({
      sendToContext: (frames, written) => this.sendFramesToContext(frames, written),
      sendToEnclave: (message) => this.sendToEnclave(message),
      expire: (error) => this.end(error, error.n),
      queued: (delta) => services.metrics.queued(admitted.enclaveImage, delta),
      replayed: () => services.metrics.replay(admitted.enclaveImage),
      completed: (operation) => this.completed(operation),
    }, services.config.partitions.get(admitted.partition)!, services.config.deadlineMs, services.budget);
    this.inbound = new InboundAssembler(this.hello!.sessionId, this.pipeline);
    services.metrics.sessionOpened(admitted.enclaveImage);
    services.scheduler.add(this);
    services.log(`sgs: session ${this.label()} admitted: EnclaveImage ${admitted.enclaveImage}, partition ${admitted.partition}`);
  }

  /**
   * An operation completed: its slot goes to the next operation now; metrics and the
   * kernel-attestation record wait until this turn's writes to the EGP are out. Results that
   * arrive together (a launch's and the dtoh pipelined behind it) then leave in one write,
   * which wakes the enclave side once, and the bookkeeping is off their path.
   */
  private completed(operation: CompletedOperation): void {
    this.services.scheduler.release(this);
    // RecordConnection flushes on the tick its first write of this turn queued, so this runs after it.
    process.nextTick(() => this.record(operation));
  }

  private record(operation: CompletedOperation): void {
    const image = this.admitted!.enclaveImage;
    const { metrics } = this.services;
    metrics.operation(image, operation.latencyMs, operation.done.computeUs, operation.done.device);
    if (!isLaunchDigest(operation.digest)) return;
    metrics.launch(image);
    if (!operation.done.codeSha384.equals(operation.digest)) {
      this.services.log(`sgs: session ${this.label()}: launch ${operation.n} ran code ${operation.done.codeSha384.toString('hex').slice(0, 16)}..., not the ${operation.digest.toString('hex').slice(0, 16)}... its frames named`);
    }
    this.services.kernelLog.write({
      time: new Date().toISOString(),
      instanceId: this.services.config.metrics.instanceId,
      enclaveImage: image,
      session: this.hello!.sessionId.toString('hex'),
      launch: operation.n,
      kernel: operation.done.kernel,
      codeSha384: operation.done.codeSha384.toString('hex'),
      device: operation.done.device, // undefined (left out of the JSON line): the launch was refused, nothing ran
    });
  }

  // Sending.

  /**
   * Control messages to the EGP: most answer what the EGP sent (BUSY for each resend of a
   * refused operation), so while the EGP does not read them SGS stops reading the EGP, and
   * what waits for it stays bounded.
   */
  private sendToEnclave(message: ControlMessage): void {
    if (this.egp.isClosed) return;
    this.egp.sendControl(message).catch(() => {});
    pauseWhileFull(this.egp.socket, this.egp.socket);
  }

  private sendToContext(message: ControlMessage): void {
    if (this.context && !this.context.isClosed) this.context.sendControl(message).catch(() => {});
  }

  /**
   * Frames to the context: a dispatched operation's, then (cut-through) each later frame of it
   * as it arrives. While the context does not read, SGS stops reading the EGP, so forwarded
   * frames wait in the enclave's buffers rather than in SGS's memory.
   */
  private sendFramesToContext(frames: readonly Buffer[], written?: (bytes: number) => void): void {
    const context = this.context!;
    // Each frame's memory goes back to the pool once written, or at once when the context is gone.
    const done = (frame: Buffer) => {
      const bytes = frame.length;
      releaseFrame(frame);
      written?.(bytes);
    };
    if (context.isClosed) {
      for (const frame of frames) done(frame);
      return;
    }
    // One writev (RecordConnection batches a turn's writes).
    for (const frame of frames) context.send(frame, () => done(frame)).catch(() => {});
    pauseWhileFull(this.egp.socket, context.socket);
  }

  /** Result frames go straight on; while the EGP does not read, SGS stops reading the context. */
  private relayToEnclave(frame: Buffer): void {
    if (this.egp.isClosed) return;
    this.egp.send(frame, () => releaseFrame(frame)).catch(() => {});
    pauseWhileFull(this.context!.socket, this.egp.socket);
  }

  // Errors.

  /** Runs an enclave-side handler; a refusal ends the session with its typed error. */
  private guard(action: () => void): void {
    try {
      action();
    } catch (error) {
      const wire = toWireError(error);
      this.end(wire, error instanceof OperationError ? error.n : undefined);
    }
  }

  /**
   * Runs a context-side handler. A context that breaks the protocol is a host failure: the
   * EGP hears INTERNAL (no detail of the host crosses), the operator reads the detail.
   */
  private guardContext(action: () => void): void {
    try {
      action();
    } catch (error) {
      this.services.log(`sgs: session ${this.label()}: the context broke the protocol: ${(error as Error).message}`);
      this.end(new WireError('INTERNAL', 'the execution context failed'), this.pipeline?.headInFlight);
    }
  }

  private endIfDrained(): void {
    if (this.draining && this.pipeline!.idle && !this.inbound!.midOperation) this.end();
  }

  private label(): string {
    return this.hello ? this.hello.sessionId.toString('hex') : '(not set up)';
  }

  private stateDescription(): string {
    return { 'await-open': 'before {t: open}', 'await-hello': 'while waiting for the context hello', 'await-reply': 'before the enclave reply', 'await-ready': 'before the session is ready', 'ready': 'in a ready session', 'closed': 'after the session ended' }[this.state];
  }
}

/** For each socket not being read: the sinks it waits for. */
const waitingFor = new WeakMap<Socket, Set<Socket>>();

/**
 * Writing to `sink` what `source` brings: while `sink` holds more than it wants, `source` is
 * not read. A source waiting for several sinks (the EGP's socket, for the context's and for
 * its own) is read again once all of them drained; one 'drain' listener per pair at most.
 */
function pauseWhileFull(source: Socket, sink: Socket): void {
  if (!sink.writableNeedDrain) return;
  let sinks = waitingFor.get(source);
  if (sinks === undefined) waitingFor.set(source, sinks = new Set());
  if (sinks.has(sink)) return;
  sinks.add(sink);
  source.pause();
  sink.once('drain', () => {
    sinks.delete(sink);
    if (sinks.size > 0) return;
    waitingFor.delete(source);
    source.resume();
  });
}
