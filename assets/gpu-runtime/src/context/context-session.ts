/**
 * One connection from SGS, one ABE session (PROTOCOL.md): the handshake, then operations in
 * stream order, until either side ends it.
 *
 *   hello-request -> hello          a fresh ContextHandshake (session id, nonce, ECDH key)
 *   reply         -> ready          the enclave's document verified here, the session key derived
 *   frames        -> results, done  operations 1, 2, 3, ... (InboundOperation, executeOperation, sendOutcome)
 *
 * An operation that fails cleanly is answered {ok: false} and the session goes on. Anything
 * that breaks the protocol (a record out of place, a frame that does not open, a replay, a
 * handshake that does not verify or does not finish in time) is answered {t: error} and the
 * connection closes. However the session ends, its key and buffers are zeroised.
 */
import type { Socket } from 'node:net';
import { parseFrame } from '../abe/frame-codec';
import { releaseFrame } from '../abe/frame-pool';
import { AttestationCheck, AttestedIdentity, ContextHandshake } from '../abe/handshake';
import { decodeEnclaveReply, encodeContextHello } from '../abe/handshake-messages';
import { AbeSession } from '../abe/session';
import { RuntimeError } from '../errors';
import { KernelCaller, imageOf } from '../kernels/kernel';
import type { KernelRegistry } from '../kernels/registry';
import { ControlMessage } from '../protocol/control';
import { RecordConnection } from '../protocol/record-connection';
import { WireError, toWireError } from '../protocol/wire-error';
import { mark } from '../timeline';
import { DeviceMemory } from './device-memory';
import { InboundOperation } from './inbound-operation';
import { executeOperation } from './operation-executor';
import { RecordQueue } from './record-queue';
import { sendOutcome } from './result-sender';

export interface SessionEnvironment {
  readonly check: AttestationCheck;
  readonly kernels: KernelRegistry;
  /** The most bytes of device buffers the session may hold. */
  readonly memoryCap: number;
  /** Time from connection to ready before the session is refused with TIMEOUT. */
  readonly handshakeTimeoutMs: number;
  /** Records waiting to be handled before the socket is paused. */
  readonly maxQueuedBytes: number;
  /** One line per session start and end (no secrets: ids, PCR prefixes, counts, error codes). */
  readonly log: (line: string) => void;
}

type State = 'await-hello-request' | 'await-reply' | 'verifying' | 'ready' | 'closed';
type QueuedRecord = { readonly frame: Buffer } | { readonly control: ControlMessage };

export class ContextSession {
  private state: State = 'await-hello-request';
  private handshake?: ContextHandshake;
  private session?: AbeSession;
  /** The attested enclave's image, once the handshake is done. */
  private caller?: KernelCaller;
  private inbound?: InboundOperation;
  /** The operation the last frame named, for the n of an error message. */
  private lastN?: number;
  private operations = 0;
  private readonly memory: DeviceMemory;
  private readonly queue: RecordQueue<QueuedRecord>;
  private readonly connection: RecordConnection;
  private readonly handshakeTimer: NodeJS.Timeout;
  private resolveClosed!: () => void;
  /** Resolves once the session has ended and its secrets are zeroised. */
  readonly closed = new Promise<void>((resolve) => { this.resolveClosed = resolve; });

  constructor(socket: Socket, private readonly env: SessionEnvironment) {
    this.memory = new DeviceMemory(env.memoryCap);
    this.queue = new RecordQueue<QueuedRecord>((record) => this.handle(record), socket, env.maxQueuedBytes);
    this.connection = new RecordConnection(socket, {
      onFrame: (frame) => this.queue.push({ frame }, frame.length),
      // Counted at their size too: a peer that stops reading our answers while it sends
      // control records would otherwise fill this queue without the socket ever pausing.
      onControl: (control, bytes) => this.queue.push({ control }, bytes),
      onClose: (error) => this.end(error),
    });
    this.handshakeTimer = setTimeout(() => {
      void this.connection.fail(new WireError('TIMEOUT', `the handshake did not complete within ${env.handshakeTimeoutMs} ms`));
    }, env.handshakeTimeoutMs);
    this.handshakeTimer.unref();
  }

  /** Ends the session now (the context is shutting down); what it has sent is still written. */
  close(): void {
    this.connection.close();
  }

  /** Ends the connection at once, dropping what it has not written yet. */
  destroy(): void {
    this.close();
    this.connection.socket.destroy();
  }

  private async handle(record: QueuedRecord): Promise<void> {
    if (this.ended) return;
    try {
      if ('frame' in record) await this.onFrame(record.frame);
      else await this.onControl(record.control);
    } catch (error) {
      if (this.ended) return;
      if (!(error instanceof RuntimeError)) {
        this.env.log(`session ${this.label()}: internal error: ${error instanceof Error ? error.stack : String(error)}`);
      }
      void this.connection.fail(toWireError(error), this.lastN); // encodeControl cuts a long reason
    }
  }

  private async onControl(message: ControlMessage): Promise<void> {
    switch (message.t) {
      case 'hello-request': {
        this.expectState('await-hello-request', message.t);
        this.handshake = ContextHandshake.start();
        this.state = 'await-reply';
        await this.connection.sendControl({ t: 'hello', hello: encodeContextHello(this.handshake.hello) });
        return;
      }
      case 'reply': {
        this.expectState('await-reply', message.t);
        this.state = 'verifying';
        let identity: AttestedIdentity | undefined;
        const check: AttestationCheck = async (document, nonce) => (identity = await this.env.check(document, nonce));
        const session = await this.handshake!.finish(decodeEnclaveReply(message.reply), check);
        if (this.ended) {
          session.close(); // the connection ended while the document was being checked
          return;
        }
        this.session = session;
        this.caller = { image: imageOf(identity!.pcrs) }; // set by the check, which finish() ran
        this.state = 'ready';
        clearTimeout(this.handshakeTimer);
        this.env.log(`session ${this.label()} ready: enclave PCR0 ${identity?.pcrs[0]?.slice(0, 16) ?? '?'}...`);
        await this.connection.sendControl({ t: 'ready', session: session.sessionId });
        return;
      }
      case 'error':
        // SGS gave up on the session (its enclave left, a deadline passed): end it without answering.
        this.end(new WireError(message.code, `SGS ended the session: ${message.reason}`));
        this.connection.close();
        return;
      default:
        throw new WireError('MALFORMED', `a context does not accept '${message.t}' messages`);
    }
  }

  private async onFrame(frame: Buffer): Promise<void> {
    if (this.state !== 'ready' || !this.session) throw new WireError('MALFORMED', 'a frame arrived before the session was ready');
    if (!this.inbound) {
      const { header } = parseFrame(frame); // unauthenticated until the opener checks the tag
      this.lastN = header.n;
      this.inbound = new InboundOperation(this.session, header);
      mark('ctx', 'begin', this.session.sessionId, header.n);
    }
    const operation = this.inbound;
    const lastFrame = operation.accept(frame, this.memory);
    releaseFrame(frame); // opened, its data copied out and its plaintext wiped: the memory can take the next frame
    if (!lastFrame) return;
    this.inbound = undefined;
    const { sessionId } = this.session;
    mark('ctx', 'arrived', sessionId, operation.n);
    const outcome = await executeOperation(operation, this.memory, this.env.kernels, this.caller!);
    mark('ctx', 'executed', sessionId, operation.n, `computeUs=${outcome.computeUs}`);
    if (this.ended) return;
    await sendOutcome(this.connection, this.session, operation.n, operation.digest, outcome);
    this.operations++;
  }

  /** A getter rather than `state === ...` inline: TypeScript would keep `state` narrowed across awaits that change it. */
  private get ended(): boolean {
    return this.state === 'closed';
  }

  private expectState(expected: State, type: string): void {
    if (this.state !== expected) throw new WireError('MALFORMED', `a '${type}' message is out of place (the session is ${this.state})`);
  }

  private end(error?: WireError): void {
    if (this.state === 'closed') return;
    const wasReady = this.state === 'ready';
    this.state = 'closed';
    clearTimeout(this.handshakeTimer);
    this.queue.stop();
    this.inbound?.abort();
    this.session?.close();
    this.memory.clear();
    const how = error ? `${error.code}: ${error.reason}` : 'closed';
    this.env.log(wasReady
      ? `session ${this.label()} ended after ${this.operations} operations: ${how}`
      : `connection ended before a session was ready: ${how}`);
    this.resolveClosed();
  }

  private label(): string {
    return this.handshake?.hello.sessionId.toString('hex') ?? '-';
  }
}

