/**
 * `egpu egp`: the EGP client behind a Unix socket, for applications in the enclave written in
 * other languages. Each connection gets its own session (its own handshake, buffers and
 * journal), opened at its first request and closed with the connection, so one application
 * never sees another's buffers.
 *
 * Requests on a connection are passed to the client in the order they arrive, so they are
 * pipelined exactly as the TypeScript API's calls are; responses are written as calls settle
 * (in order, except that a request refused before it reaches the client is answered at once).
 * Hard limits: a request line of at most maxLineBytes, at most maxPendingRequests unanswered
 * per connection (reading pauses beyond it), and at most maxConnections connections.
 */
import type { Server, Socket } from 'node:net';
import type { EnclaveIdentity } from '../abe/handshake';
import { removeStaleSocket } from '../context/stale-socket';
import { Address, formatAddress, listen } from '../protocol/transport';
import { EgpClient, EgpLimits } from './client';
import { BadRequest, RequestFailure, SocketCall, errorLine, parseRequest, resultLine } from './socket-protocol';

export interface EgpSocketServerOptions {
  readonly listen: Address;
  readonly sgs: Address;
  readonly enclave: EnclaveIdentity;
  readonly limits?: Partial<EgpLimits>;
  /** Longest request line (base64 data included). */
  readonly maxLineBytes?: number;
  readonly maxPendingRequests?: number;
  readonly maxConnections?: number;
  readonly log?: (line: string) => void;
}

export const DEFAULT_MAX_LINE_BYTES = 192 * 1024 * 1024; // a ResNet-50 (102 MB) in base64, with room
const DEFAULT_MAX_PENDING = 1024;
const DEFAULT_MAX_CONNECTIONS = 64;
/** The longest a refused connection is kept for its answer to be written. */
const REFUSAL_LINGER_MS = 1_000;

export class EgpSocketServer {
  static async start(options: EgpSocketServerOptions): Promise<EgpSocketServer> {
    const server = new EgpSocketServer(options);
    // A socket file left by an EGP that died would make listen fail; a live one is refused.
    if (options.listen.kind === 'unix') await removeStaleSocket(options.listen.path);
    server.server = await listen(options.listen, (socket) => server.accept(socket));
    return server;
  }

  private server!: Server;
  private readonly connections = new Set<SocketConnection>();
  /** Connections refused at maxConnections whose answer is still being written. */
  private readonly refused = new Set<Socket>();

  private constructor(private readonly options: EgpSocketServerOptions) {}

  get address(): string {
    return formatAddress(this.options.listen);
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /** Stops listening and ends every connection (their calls fail CLOSED). */
  async close(): Promise<void> {
    for (const connection of this.connections) connection.close();
    for (const socket of this.refused) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(socket: Socket): void {
    const maxConnections = this.options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
    if (this.connections.size >= maxConnections) {
      this.refuse(socket, errorLine(null, new BadRequest(`this EGP serves at most ${maxConnections} connections`)));
      return;
    }
    const connection = new SocketConnection(socket, this.options, () => this.connections.delete(connection));
    this.connections.add(connection);
  }

  /**
   * Answers `line` and closes the connection on this side: what the peer sends is read and
   * dropped, and the socket is destroyed once the line is written, or after REFUSAL_LINGER_MS
   * when it cannot be (a peer that does not read). A refused connection holds no descriptor
   * and does not hold up close().
   */
  private refuse(socket: Socket, line: string): void {
    this.refused.add(socket);
    const timer = setTimeout(() => socket.destroy(), REFUSAL_LINGER_MS).unref();
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      this.refused.delete(socket);
    });
    socket.resume();
    socket.end(line, () => socket.destroy());
  }
}

/** One application's connection: line framing, its session, its pending requests. */
class SocketConnection {
  private client?: Promise<EgpClient>;
  private pieces: Buffer[] = [];
  private pieceBytes = 0;
  private pending = 0;
  private closed = false;
  private readonly maxLine: number;
  private readonly maxPending: number;

  constructor(private readonly socket: Socket, private readonly options: EgpSocketServerOptions, private readonly onClosed: () => void) {
    this.maxLine = options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
    this.maxPending = options.maxPendingRequests ?? DEFAULT_MAX_PENDING;
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('error', () => this.close());
    socket.on('close', () => this.close());
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.client?.then((client) => client.close(), () => undefined);
    if (!this.socket.destroyed) this.socket.destroy();
    this.onClosed();
  }

  private receive(chunk: Buffer): void {
    let start = 0;
    for (let newline = chunk.indexOf(10); newline >= 0; newline = chunk.indexOf(10, start)) {
      this.pieces.push(chunk.subarray(start, newline));
      const line = Buffer.concat(this.pieces, this.pieceBytes + newline - start);
      this.pieces = [];
      this.pieceBytes = 0;
      start = newline + 1;
      if (line.length > this.maxLine) return this.refuseLine();
      if (line.length > 0) this.handle(line.toString('utf8'));
      if (this.closed) return;
    }
    const rest = chunk.subarray(start);
    this.pieceBytes += rest.length;
    if (this.pieceBytes > this.maxLine) return this.refuseLine();
    if (rest.length > 0) this.pieces.push(rest);
  }

  private refuseLine(): void {
    this.socket.end(errorLine(null, new BadRequest(`a request line is at most ${this.maxLine} bytes; the connection is closed`)));
    this.close();
  }

  private handle(line: string): void {
    let request;
    try {
      request = parseRequest(line);
    } catch (error) {
      if (error instanceof RequestFailure) this.options.log?.(error.message);
      this.write(errorLine(error instanceof BadRequest || error instanceof RequestFailure ? error.id : null, error));
      return;
    }
    this.pending++;
    if (this.pending >= this.maxPending) this.socket.pause();
    const { id, call } = request;
    this.invoke(call).then(
      (result) => this.answer(resultLine(id, result)),
      (error: unknown) => this.answer(errorLine(id, error)),
    );
  }

  private answer(line: string): void {
    this.pending--;
    this.write(line);
    if (this.pending < this.maxPending && this.socket.isPaused() && !this.closed) this.socket.resume();
  }

  private write(line: string): void {
    if (!this.closed) this.socket.write(line);
  }

  /**
   * Passes the call to this connection's client. Calls made while the session is being set
   * up wait for it in order: each chains on the same connect promise, and promise callbacks
   * run in the order they were attached.
   */
  private async invoke(call: SocketCall): Promise<Record<string, unknown>> {
    this.client ??= EgpClient.connect({ sgs: this.options.sgs, enclave: this.options.enclave, limits: this.options.limits }).catch((error: unknown) => {
      this.client = undefined; // the next request tries again
      this.options.log?.(`no session with SGS for a connection: ${(error as Error).message}`);
      throw error;
    });
    const client = await this.client;
    switch (call.method) {
      case 'malloc': return { buffer: await client.malloc(call.size) };
      case 'memcpyHtoD': await client.memcpyHtoD(call.buffer, call.data); return {};
      case 'memcpyDtoH': return { data: (await client.memcpyDtoH(call.buffer)).toString('base64') };
      case 'free': await client.free(call.buffer); return {};
      case 'synchronize': await client.synchronize(); return {};
      case 'launchKernel': {
        const launched = await client.launchKernel(call.kernel, call.args, { digest: call.digest });
        return { kernel: launched.kernel, codeSha384: launched.codeSha384.toString('hex'), computeUs: launched.computeUs, queueUs: launched.queueUs };
      }
    }
  }
}
