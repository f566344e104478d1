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
 * per connection (answers not yet written to the socket included; reading pauses beyond it),
 * reading paused while more than maxBufferedBytes of answers wait for a client that does not
 * read or are still to come from the memcpyDtoH calls in flight (so a client that asks for a
 * large buffer many times without reading holds about maxBufferedBytes plus one answer, not
 * maxPendingRequests answers), at most maxHeldLineBytes of unfinished lines across connections, and at most
 * maxConnections connections. The connections' clients share one buffer pool of
 * limits.poolBytes, so pooled memory does not grow with the number of connections.
 */
import { chmodSync } from 'node:fs';
import type { Server, Socket } from 'node:net';
import type { EnclaveIdentity } from '../abe/handshake';
import { removeStaleSocket } from '../context/stale-socket';
import { RefusedConnections } from '../protocol/refused-connections';
import { Address, TransportError, formatAddress, listen } from '../protocol/transport';
import { BufferPool } from '../buffer-pool';
import { DEFAULT_LIMITS, EgpClient, EgpLimits } from './client';
import { EgpError } from './errors';
import { BadRequest, RequestFailure, SocketCall, errorLine, parseRequest, resultLine } from './socket-protocol';

export interface EgpSocketServerOptions {
  readonly listen: Address;
  readonly sgs: Address;
  readonly enclave: EnclaveIdentity;
  readonly limits?: Partial<EgpLimits>;
  /** Longest request line (base64 data included). */
  readonly maxLineBytes?: number;
  /** Requests read on a connection and not yet answered (in flight, or answered but not yet written to the socket); reading pauses at this many. */
  readonly maxPendingRequests?: number;
  /** Reading from a connection pauses while more than this many bytes of answers wait to be written to it. */
  readonly maxBufferedBytes?: number;
  /**
   * Bytes of unfinished request lines held across all connections (default twice
   * maxLineBytes); a connection whose input would pass it gets TOO_LARGE and is closed.
   */
  readonly maxHeldLineBytes?: number;
  readonly maxConnections?: number;
  readonly log?: (line: string) => void;
}

export const DEFAULT_MAX_LINE_BYTES = 192 * 1024 * 1024; // a ResNet-50 (102 MB) in base64, with room
const DEFAULT_MAX_PENDING = 1024;
const DEFAULT_MAX_BUFFERED_BYTES = 16 * 1024 * 1024;
const DEFAULT_MAX_CONNECTIONS = 64;
/** A memcpyDtoH answer line beyond its base64 data: {"id":...,"result":{"data":"..."}} and the newline. */
const DTOH_LINE_OVERHEAD = 64;
/** The socket file's mode: only the user egpu egp runs as may connect. */
const SOCKET_MODE = 0o600;

export class EgpSocketServer {
  static async start(options: EgpSocketServerOptions): Promise<EgpSocketServer> {
    const server = new EgpSocketServer(options);
    // A socket file left by an EGP that died would make listen fail; a live one is refused.
    if (options.listen.kind === 'unix') await removeStaleSocket(options.listen.path);
    server.server = await listen(options.listen, (socket) => server.accept(socket));
    if (options.listen.kind === 'unix') {
      // Owner only, whatever the umask: each connection gets an attested session with SGS.
      // The kernel checks the mode at connect(), so done at once after listen, only a peer
      // that connected in between (and that the umask let in) could get through.
      try {
        chmodSync(options.listen.path, SOCKET_MODE);
      } catch (error) {
        await new Promise<void>((resolve) => server.server.close(() => resolve()));
        throw new TransportError('LISTEN', `cannot make ${options.listen.path} owner-only: ${(error as Error).message}`);
      }
    }
    return server;
  }

  private server!: Server;
  private readonly connections = new Set<SocketConnection>();
  /** Connections refused at maxConnections, and those closed on a refused line, while their answer is written. */
  private readonly refused = new RefusedConnections();
  /** Bytes of request input (mostly unfinished lines) held across connections. */
  private readonly held: HeldBudget;
  /** The clients' upload copies and sealed frames, reused across connections. */
  private readonly pool: BufferPool;

  private constructor(private readonly options: EgpSocketServerOptions) {
    this.held = { held: 0, max: options.maxHeldLineBytes ?? 2 * (options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES) };
    this.pool = new BufferPool({ maxBytes: options.limits?.poolBytes ?? DEFAULT_LIMITS.poolBytes });
  }

  get address(): string {
    return formatAddress(this.options.listen);
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /** Stops listening and ends every connection (their calls fail CLOSED). */
  async close(): Promise<void> {
    for (const connection of this.connections) connection.close();
    this.refused.destroyAll();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(socket: Socket): void {
    const maxConnections = this.options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
    if (this.connections.size >= maxConnections) {
      this.refused.refuse(socket, errorLine(null, new BadRequest(`this EGP serves at most ${maxConnections} connections`)));
      return;
    }
    const connection: SocketConnection = new SocketConnection(socket, this.options, {
      budget: this.held,
      pool: this.pool,
      closed: () => this.connections.delete(connection),
      refuse: (refused, line) => this.refused.refuse(refused, line),
    });
    this.connections.add(connection);
  }
}

/** Bytes of request input held across a server's connections, against one budget. */
interface HeldBudget {
  held: number;
  readonly max: number;
}

/** What a connection asks of its server. */
interface ConnectionHooks {
  readonly budget: HeldBudget;
  /** The buffer pool every connection's client shares. */
  readonly pool: BufferPool;
  /** The connection is closed (its socket destroyed, or handed to refuse). */
  closed(): void;
  /** Answers `line` and closes the socket on the server's side (EgpSocketServer.refuse). */
  refuse(socket: Socket, line: string): void;
}

/**
 * One application's connection: line framing, its session, its pending requests.
 *
 * Input is split into lines only while the connection is not blocked, that is while fewer than
 * maxPending requests are outstanding (read, and their answer not yet written to the socket:
 * in flight, or refused and buffered) and at most maxBufferedBytes wait in the socket's write
 * buffer. While blocked, reading pauses; each answer written to the socket unblocks it in
 * turn. So a client that does not read holds at most maxPending answers in the daemon, and
 * stops being read once maxBufferedBytes wait for it.
 */
class SocketConnection {
  private client?: Promise<EgpClient>;
  /** The request line being received: chunks with no newline. */
  private pieces: Buffer[] = [];
  private pieceBytes = 0;
  /** Chunks received and not yet split into lines (while blocked). */
  private readonly backlog: Buffer[] = [];
  /** Bytes of pieces and backlog, counted in the server's budget. */
  private held = 0;
  /** Requests read whose answer is not yet written to the socket. */
  private outstanding = 0;
  /** Calls passed to the client that have not settled. */
  private inFlight = 0;
  /** The answer bytes the memcpyDtoH calls in flight will bring (see blocked()). */
  private dtohAnswerBytes = 0;
  /** launchKernel calls read and not yet answered: until they are, a kernel may resize any buffer. */
  private launchesInFlight = 0;
  /** The connection's client, once connected (its buffer sizes estimate memcpyDtoH answers). */
  private connected?: EgpClient;
  /** The client has shut down its write side: no more requests come. */
  private ended = false;
  private closed = false;
  private readonly maxLine: number;
  private readonly maxPending: number;
  private readonly maxBuffered: number;

  constructor(private readonly socket: Socket, private readonly options: EgpSocketServerOptions, private readonly hooks: ConnectionHooks) {
    this.maxLine = options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
    this.maxPending = options.maxPendingRequests ?? DEFAULT_MAX_PENDING;
    this.maxBuffered = options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES;
    // A client that shuts down its write side once it has sent its requests (nc -N, socat)
    // still gets every answer: this side ends once they are written (see pump), not at once.
    socket.allowHalfOpen = true;
    socket.on('end', () => {
      this.ended = true;
      this.pump();
    });
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('error', () => this.close());
    socket.on('close', () => this.close());
  }

  close(): void {
    if (!this.stop()) return;
    if (!this.socket.destroyed) this.socket.destroy();
    this.hooks.closed();
  }

  /** Closes the connection after one last line to the client (see EgpSocketServer.refuse). */
  private closeWith(line: string): void {
    if (!this.stop()) return;
    this.hooks.closed();
    this.hooks.refuse(this.socket, line);
  }

  /** Marks the connection closed, releases what it holds and closes its session; false if it was already. */
  private stop(): boolean {
    if (this.closed) return false;
    this.closed = true;
    this.hooks.budget.held -= this.held;
    this.held = 0;
    this.pieces = [];
    this.backlog.length = 0;
    this.client?.then((client) => client.close(), () => undefined);
    return true;
  }

  private receive(chunk: Buffer): void {
    if (this.closed) return;
    const budget = this.hooks.budget;
    if (budget.held + chunk.length > budget.max) {
      this.options.log?.(`closing a connection: unfinished request lines would pass ${budget.max} bytes across connections`);
      return this.closeWith(errorLine(null, new EgpError('TOO_LARGE', `this EGP holds at most ${budget.max} bytes of unfinished request lines across its connections; the connection is closed`)));
    }
    budget.held += chunk.length;
    this.held += chunk.length;
    this.backlog.push(chunk);
    this.pump();
  }

  private blocked(): boolean {
    return this.outstanding >= this.maxPending || this.socket.writableLength + this.dtohAnswerBytes > this.maxBuffered;
  }

  /**
   * The bytes of a memcpyDtoH's answer line: its buffer in base64 and the line around it. A
   * buffer whose size the client does not know (a kernel may have resized it, or a launch read
   * before it and not yet answered may: the client learns of a launch only once it is passed
   * on, after this estimate) counts as more than maxBufferedBytes: no other request is read
   * until it is answered.
   */
  private dtohAnswerEstimate(buffer: number): number {
    const size = this.launchesInFlight > 0 ? undefined : this.connected?.knownSize(buffer);
    return size === undefined ? this.maxBuffered + 1 : 4 * Math.ceil(size / 3) + DTOH_LINE_OVERHEAD;
  }

  /** Handles the complete lines received while not blocked; pauses or resumes reading to match. */
  private pump(): void {
    while (!this.closed && this.backlog.length > 0 && !this.blocked()) {
      const chunk = this.backlog[0];
      const newline = chunk.indexOf(10);
      if (newline < 0) {
        this.backlog.shift();
        this.pieces.push(chunk);
        this.pieceBytes += chunk.length;
        if (this.pieceBytes > this.maxLine) return this.refuseLine();
        continue;
      }
      if (newline + 1 < chunk.length) this.backlog[0] = chunk.subarray(newline + 1);
      else this.backlog.shift();
      const length = this.pieceBytes + newline;
      if (length > this.maxLine) return this.refuseLine();
      this.pieces.push(chunk.subarray(0, newline));
      const line = Buffer.concat(this.pieces, length);
      this.pieces = [];
      this.pieceBytes = 0;
      this.held -= length + 1;
      this.hooks.budget.held -= length + 1;
      if (line.length > 0) this.handle(line.toString('utf8'));
    }
    if (this.closed) return;
    if (this.ended) {
      // An unfinished last line is dropped; the connection ends once every answer is written.
      if (this.backlog.length === 0 && this.outstanding === 0 && !this.socket.writableEnded) this.socket.end();
      return;
    }
    if (this.blocked()) this.socket.pause();
    else if (this.socket.isPaused()) this.socket.resume();
  }

  private refuseLine(): void {
    this.closeWith(errorLine(null, new BadRequest(`a request line is at most ${this.maxLine} bytes; the connection is closed`)));
  }

  private handle(line: string): void {
    this.outstanding++;
    let request;
    try {
      request = parseRequest(line);
    } catch (error) {
      if (error instanceof RequestFailure) this.options.log?.(error.message);
      this.send(errorLine(error instanceof BadRequest || error instanceof RequestFailure ? error.id : null, error));
      return;
    }
    const { id, call } = request;
    this.inFlight++;
    const expected = call.method === 'memcpyDtoH' ? this.dtohAnswerEstimate(call.buffer) : 0;
    this.dtohAnswerBytes += expected;
    const launch = call.method === 'launchKernel' ? 1 : 0;
    this.launchesInFlight += launch;
    this.invoke(call).then(
      (result) => this.answer(resultLine(id, result), expected, launch),
      (error: unknown) => this.answer(errorLine(id, error), expected, launch),
    );
  }

  private answer(line: string, expected: number, launch: number): void {
    this.inFlight--;
    this.launchesInFlight -= launch;
    this.dtohAnswerBytes -= expected; // what it brought now waits in the socket instead (send)
    this.send(line);
    this.pump();
  }

  /** Writes an answer; its request stops counting as outstanding once the socket has taken it. */
  private send(line: string): void {
    if (this.closed) return;
    this.socket.write(line, () => {
      this.outstanding--;
      this.pump();
    });
  }

  /**
   * Passes the call to this connection's client. Calls made while the session is being set
   * up wait for it in order: each chains on the same connect promise, and promise callbacks
   * run in the order they were attached.
   */
  private async invoke(call: SocketCall): Promise<Record<string, unknown>> {
    this.client ??= EgpClient.connect({ sgs: this.options.sgs, enclave: this.options.enclave, limits: this.options.limits, pool: this.hooks.pool }).catch((error: unknown) => {
      this.client = undefined; // the next request tries again
      this.options.log?.(`no session with SGS for a connection: ${(error as Error).message}`);
      throw error;
    });
    const client = await this.client;
    this.connected = client;
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
