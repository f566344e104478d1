/**
 * A stand-in EGP for the SGS tests, built from the real enclave-side pieces: answerHello with
 * a simulated NSM for the handshake, AbeSession sealers and openers for operations. It keeps
 * every record SGS sends in an inbox, so a test reads them in order and states what it expects.
 */
import { connect as netConnect, Socket } from 'node:net';
import { sealBuffer } from '../../src/abe/frame';
import { parseFrame } from '../../src/abe/frame-codec';
import { ENCLAVE_TO_HOST, HOST_TO_ENCLAVE } from '../../src/abe/frame-header';
import { Attester, answerHello } from '../../src/abe/handshake';
import { decodeContextHello, encodeEnclaveReply } from '../../src/abe/handshake-messages';
import { ImagePcrs } from '../../src/abe/key-schedule';
import { AbeSession } from '../../src/abe/session';
import { SimulatedNsm } from '../../src/attestation/simulated-nsm';
import { ControlMessage } from '../../src/protocol/control';
import { OperationRequest, OperationResult, decodeResult, encodeRequest } from '../../src/protocol/op-descriptor';
import { RecordConnection } from '../../src/protocol/record-connection';
import { WireError } from '../../src/protocol/wire-error';
import { NO_KERNEL } from './fake-context';

export type Incoming =
  | { kind: 'frame'; frame: Buffer }
  | { kind: 'control'; message: ControlMessage }
  | { kind: 'closed'; error?: WireError };

export type ErrorMessage = Extract<ControlMessage, { t: 'error' }>;
export type DoneMessage = Extract<ControlMessage, { t: 'done' }>;

export interface EnclaveOptions {
  readonly nsm: SimulatedNsm;
  /** The PCRs the document attests (and the session key is derived with). */
  readonly pcrs: ImagePcrs;
  /** Alters the request before the NSM signs (a wrong nonce, say). */
  readonly tamper?: (request: { nonce: Buffer; userData: Buffer }) => void;
  /** The document's timestamp (default now). */
  readonly timestamp?: Date;
}

export interface OperationAnswer {
  readonly result: OperationResult;
  readonly data: Buffer;
  readonly done: DoneMessage;
}

export class FakeEgp {
  /** Connects to SGS at a unix socket path. */
  static connect(path: string): Promise<FakeEgp> {
    return new Promise((resolve, reject) => {
      const socket = netConnect(path);
      socket.once('connect', () => resolve(new FakeEgp(socket)));
      socket.once('error', reject);
    });
  }

  readonly connection: RecordConnection;
  private readonly inbox: Incoming[] = [];
  private waiter: (() => void) | undefined;
  session: AbeSession | undefined;
  /** Bytes of the frames SGS relayed to this EGP, length prefixes included. */
  frameBytesReceived = 0;

  private constructor(readonly socket: Socket) {
    this.connection = new RecordConnection(socket, {
      onFrame: (frame) => {
        this.frameBytesReceived += frame.length;
        this.deliver({ kind: 'frame', frame });
      },
      onControl: (message) => this.deliver({ kind: 'control', message }),
      onClose: (error) => this.deliver({ kind: 'closed', error }),
    });
  }

  /** The next record from SGS (or the close), in order. */
  async next(): Promise<Incoming> {
    while (this.inbox.length === 0) await new Promise<void>((resolve) => { this.waiter = resolve; });
    return this.inbox.shift()!;
  }

  /** The next control message; fails the test on a frame or a close. */
  async nextControl(): Promise<ControlMessage> {
    const item = await this.next();
    if (item.kind !== 'control') throw new Error(`expected a control message, got ${describe(item)}`);
    return item.message;
  }

  /** Expects an error message, then the connection's end (for any code but BUSY). */
  async expectError(code: WireError['code']): Promise<ErrorMessage> {
    const message = await this.nextControl();
    if (message.t !== 'error' || message.code !== code) throw new Error(`expected error ${code}, got ${JSON.stringify(message)}`);
    if (code !== 'BUSY') await this.expectClosed();
    return message;
  }

  async expectClosed(): Promise<void> {
    const item = await this.next();
    if (item.kind !== 'closed') throw new Error(`expected the connection to close, got ${describe(item)}`);
  }

  /**
   * {t: open}, then answers SGS's relayed hello with an attested reply. Resolves with the
   * ready message, or with the error SGS sent instead.
   */
  async open(enclave: EnclaveOptions): Promise<{ ready: true } | { ready: false; error: ErrorMessage }> {
    await this.connection.sendControl({ t: 'open' });
    const hello = await this.nextControl();
    if (hello.t === 'error') return { ready: false, error: hello };
    if (hello.t !== 'hello') throw new Error(`expected hello, got ${hello.t}`);
    const attester: Attester = {
      attest: (request) => {
        const nonce = Buffer.from(request.nonce);
        const userData = Buffer.from(request.userData);
        enclave.tamper?.({ nonce, userData });
        return enclave.nsm.attest({ pcrs: { 0: enclave.pcrs[0], 1: enclave.pcrs[1], 2: enclave.pcrs[2] }, nonce, userData, publicKey: request.publicKey, timestamp: enclave.timestamp });
      },
    };
    const { reply, session } = await answerHello(decodeContextHello(hello.hello), { attester, pcrs: enclave.pcrs });
    this.session = session;
    await this.connection.sendControl({ t: 'reply', reply: encodeEnclaveReply(reply) });
    const ready = await this.nextControl();
    if (ready.t === 'error') return { ready: false, error: ready };
    if (ready.t !== 'ready' || !ready.session.equals(session.sessionId)) throw new Error(`expected ready, got ${JSON.stringify(ready)}`);
    return { ready: true };
  }

  /** Seals operation n: its descriptor chunk, then `data` (htod) in chunks; returns the frames. */
  seal(n: number, request: OperationRequest, data?: Buffer, digest: Buffer = NO_KERNEL): Buffer[] {
    const sealer = this.session!.sealer(n, ENCLAVE_TO_HOST, digest);
    const frames = [sealer.seal(0, encodeRequest(request), data === undefined)];
    if (data !== undefined) frames.push(...sealBuffer(sealer, (request as { buffer: number }).buffer, data, true));
    return frames;
  }

  send(frames: readonly Buffer[]): void {
    for (const frame of frames) this.connection.send(frame).catch(() => {});
  }

  /** Reads operation n's result frames and its {t: done}; throws on anything else. */
  async answer(n: number): Promise<OperationAnswer> {
    let opener;
    let result: OperationResult | undefined;
    const data: Buffer[] = [];
    for (;;) {
      const item = await this.next();
      if (item.kind === 'control' && item.message.t === 'done' && result !== undefined) {
        if (item.message.n !== n) throw new Error(`done for ${item.message.n}, expected ${n}`);
        return { result, data: Buffer.concat(data), done: item.message };
      }
      if (item.kind !== 'frame') throw new Error(`while waiting for operation ${n}: ${describe(item)}`);
      const { header } = parseFrame(item.frame);
      opener ??= this.session!.opener(n, HOST_TO_ENCLAVE, header.digest);
      const chunk = opener.open(item.frame);
      if (chunk.chunk === 0) result = decodeResult(Buffer.from(chunk.plaintext));
      else data.push(Buffer.from(chunk.plaintext));
    }
  }

  /** Sends operation n and waits for its answer. */
  async call(n: number, request: OperationRequest, data?: Buffer, digest?: Buffer): Promise<OperationAnswer> {
    this.send(this.seal(n, request, data, digest));
    return this.answer(n);
  }

  close(): void {
    this.session?.close();
    this.connection.close();
  }

  private deliver(item: Incoming): void {
    this.inbox.push(item);
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.();
  }
}

function describe(item: Incoming): string {
  if (item.kind === 'frame') return 'a frame';
  if (item.kind === 'closed') return `the close${item.error ? ` (${item.error.code}: ${item.error.reason})` : ''}`;
  return JSON.stringify(item.message, (_k, v) => (v && v.type === 'Buffer' ? `<${v.data.length} bytes>` : v));
}
