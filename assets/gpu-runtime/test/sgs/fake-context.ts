/**
 * A stand-in execution context for the SGS tests: a real socket server speaking the protocol
 * (PROTOCOL.md) with the real ABE code. It completes the handshake (verifying the enclave's
 * document itself), opens each operation's frames, runs it against a small in-memory device
 * (malloc, free, htod, dtoh and one kernel, `increment`, which adds 1 to every byte of a
 * buffer), and answers with sealed result frames and {t: done}.
 *
 * Test controls: `hold` keeps finished operations unanswered until release(), so a test can
 * build queues without timing anything; `crash()` drops every connection.
 */
import type { X509Certificate } from 'node:crypto';
import { Server, Socket } from 'node:net';
import { parseFrame } from '../../src/abe/frame-codec';
import { FrameOpener, sealBuffer } from '../../src/abe/frame';
import { ENCLAVE_TO_HOST, HOST_TO_ENCLAVE } from '../../src/abe/frame-header';
import { ContextHandshake } from '../../src/abe/handshake';
import { decodeEnclaveReply, encodeContextHello } from '../../src/abe/handshake-messages';
import { AbeSession } from '../../src/abe/session';
import { verifyAttestationDocument } from '../../src/attestation/verify';
import { ControlMessage } from '../../src/protocol/control';
import { OperationRequest, OperationResult, decodeRequest, encodeResult } from '../../src/protocol/op-descriptor';
import { RecordConnection } from '../../src/protocol/record-connection';
import { listen } from '../../src/protocol/transport';
import { WireError } from '../../src/protocol/wire-error';
import { sha384 } from './fixtures';

export const INCREMENT_KERNEL = 'increment';
/** The "code" of the fake context's one kernel. */
export const INCREMENT_DIGEST = sha384('fake context kernel: increment');
export const NO_KERNEL = Buffer.alloc(48);

/** An operation as the context received it, in order of arrival. */
export interface ReceivedOperation {
  readonly session: string;
  readonly n: number;
  readonly request: OperationRequest;
}

export class FakeContext {
  static async start(path: string, root: X509Certificate): Promise<FakeContext> {
    const context = new FakeContext(root);
    context.server = await listen({ kind: 'unix', path }, (socket) => context.accept(socket));
    return context;
  }

  /** Operations in the order they arrived (all sessions). */
  readonly received: ReceivedOperation[] = [];
  /** Every frame as it arrived: its operation and chunk (all sessions). */
  readonly frames: Array<{ readonly n: number; readonly chunk: number }> = [];
  /** Answers of finished operations while `hold` is on, oldest first. */
  private readonly held: Array<() => void> = [];
  private readonly sockets = new Set<Socket>();
  /** Every connection SGS opened here, in order (its own side: a test may pause it, as a context that stops reading). */
  readonly accepted: Socket[] = [];
  private server!: Server;
  hold = false;
  /** Sessions established (handshakes completed). */
  sessions = 0;

  private constructor(private readonly root: X509Certificate) {}

  get heldCount(): number {
    return this.held.length;
  }

  /** Answers up to `count` held operations, oldest first. */
  release(count = Infinity): void {
    for (let i = 0; i < count && this.held.length > 0; i++) this.held.shift()!();
  }

  /** Every connection dropped at once, as when the context process dies. */
  crash(): void {
    for (const socket of this.sockets) socket.destroy();
  }

  close(): Promise<void> {
    this.crash();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private accept(socket: Socket): void {
    this.sockets.add(socket);
    this.accepted.push(socket);
    socket.on('close', () => this.sockets.delete(socket));
    new ContextConnection(socket, this);
  }

  /** Called by a connection: answer now, or later when holding. */
  answer(operation: ReceivedOperation, send: () => void): void {
    this.received.push(operation);
    if (this.hold) this.held.push(send);
    else send();
  }

  check(doc: Buffer, expectedNonce: Buffer) {
    return verifyAttestationDocument(doc, { root: this.root, expectedNonce });
  }
}

/** One session at the fake context. */
class ContextConnection {
  private readonly connection: RecordConnection;
  private handshake: ContextHandshake | undefined;
  private session: AbeSession | undefined;
  private opener: FrameOpener | undefined;
  private request: OperationRequest | undefined;
  private data: Buffer[] = [];
  private readonly device = new Map<number, Buffer>();

  constructor(socket: Socket, private readonly context: FakeContext) {
    this.connection = new RecordConnection(socket, {
      onControl: (message) => void this.onControl(message),
      onFrame: (frame) => this.onFrame(frame),
      onClose: () => this.session?.close(),
    });
  }

  private async onControl(message: ControlMessage): Promise<void> {
    if (message.t === 'hello-request') {
      this.handshake = ContextHandshake.start();
      await this.connection.sendControl({ t: 'hello', hello: encodeContextHello(this.handshake.hello) });
    } else if (message.t === 'reply') {
      try {
        this.session = await this.handshake!.finish(decodeEnclaveReply(message.reply), (doc, nonce) => this.context.check(doc, nonce));
      } catch (error) {
        await this.connection.fail(new WireError('UNAUTHORIZED', (error as Error).message));
        return;
      }
      this.context.sessions++;
      await this.connection.sendControl({ t: 'ready', session: this.session.sessionId });
    } else {
      this.connection.close();
    }
  }

  private onFrame(frame: Buffer): void {
    const { header } = parseFrame(frame);
    this.opener ??= this.session!.opener(header.n, ENCLAVE_TO_HOST, header.digest);
    const chunk = this.opener.open(frame);
    this.context.frames.push({ n: header.n, chunk: chunk.chunk });
    if (chunk.chunk === 0) this.request = decodeRequest(Buffer.from(chunk.plaintext));
    else this.data.push(Buffer.from(chunk.plaintext));
    if (!chunk.last) return;
    const n = header.n;
    const digest = header.digest;
    const request = this.request!;
    const data = Buffer.concat(this.data);
    this.opener = undefined;
    this.data = [];
    const started = process.hrtime.bigint();
    const { result, output } = this.execute(request, data);
    const computeUs = Number((process.hrtime.bigint() - started) / 1000n);
    const session = this.session!;
    this.context.answer({ session: session.sessionId.toString('hex'), n, request }, () => {
      if (this.connection.isClosed) return;
      const sealer = session.sealer(n, HOST_TO_ENCLAVE, digest);
      this.connection.send(sealer.seal(0, encodeResult(result), output === undefined)).catch(() => {});
      if (output !== undefined) {
        const buffer = (request as { buffer: number }).buffer;
        for (const out of sealBuffer(sealer, buffer, output, true)) this.connection.send(out).catch(() => {});
      }
      const kernel = request.op === 'launch' ? request.kernel : request.op;
      const launched = request.op === 'launch';
      // As a context with onnxruntime's CUDA provider reports its launches.
      this.connection.sendControl({ t: 'done', n, kernel, codeSha384: launched ? INCREMENT_DIGEST : NO_KERNEL, computeUs, device: launched ? 'gpu' : undefined }).catch(() => {});
    });
  }

  private execute(request: OperationRequest, data: Buffer): { result: OperationResult; output?: Buffer } {
    switch (request.op) {
      case 'malloc':
        this.device.set(request.buffer, Buffer.alloc(request.size));
        return { result: { ok: true } };
      case 'free':
        this.device.delete(request.buffer);
        return { result: { ok: true } };
      case 'htod':
        this.device.set(request.buffer, data);
        return { result: { ok: true } };
      case 'dtoh': {
        const buffer = this.device.get(request.buffer) ?? Buffer.alloc(0);
        return { result: { ok: true, size: buffer.length }, output: buffer };
      }
      case 'launch': {
        const buffer = this.device.get(Number(request.args.get('buffer')));
        if (request.kernel !== INCREMENT_KERNEL || buffer === undefined) return { result: { ok: false, code: 'BAD_LAUNCH', reason: 'unknown kernel or buffer' } };
        for (let i = 0; i < buffer.length; i++) buffer[i] = (buffer[i] + 1) & 0xff;
        return { result: { ok: true } };
      }
    }
  }
}
