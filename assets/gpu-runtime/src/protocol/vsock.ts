/**
 * AF_VSOCK through the native addon (dist/vsock.node, built from native/vsock.c). Node
 * cannot wrap a vsock descriptor in a net.Socket, so the addon bridges each vsock
 * connection to an AF_UNIX socketpair on a thread of its own and hands JavaScript the other
 * end: a plain net.Socket (a pipe to libuv), on which the record code runs unchanged.
 *
 * This module is the thin layer over the addon; transport.ts validates addresses, chooses
 * the addon (injectably, for tests) and turns failures into TransportErrors.
 */
import * as net from 'node:net';
import { loadAddon } from '../native-addon';

/** VMADDR_CID_ANY and VMADDR_PORT_ANY: any local CID (listening), any free port. */
export const VSOCK_ANY = 0xffff_ffff;

/** `vsock:CID:PORT`, with VMADDR_CID_ANY written `any`. */
export function formatVsock(cid: number, port: number): string {
  return `vsock:${cid === VSOCK_ANY ? 'any' : cid}:${port}`;
}

/**
 * An accept that failed: `fatal` when the accept loop has stopped for good (the listening
 * socket failed), not when it goes on (out of descriptors or memory, a connection that could
 * not be bridged).
 */
export interface AcceptError extends NodeJS.ErrnoException {
  fatal?: boolean;
}

/** Called on the JavaScript thread with a bridged fd per accepted connection, or an accept error. */
export type ConnectionCallback = (error: AcceptError | null, fd?: number) => void;

/** A listening socket whose accept loop runs on a native thread. */
export interface NativeListener {
  close(): void;
  /** The bound CID and port (a port asked for as any is resolved); null once closed or for other families. */
  address(): { cid: number; port: number } | null;
  ref(): void;
  unref(): void;
}

/** What dist/vsock.node exports. Failed system calls throw (or reject) with errno codes. */
export interface VsockAddon {
  /** Connects (on the libuv pool, so the JavaScript thread never blocks) and bridges. */
  connect(cid: number, port: number): Promise<number>;
  listen(cid: number, port: number, backlog: number, onConnection: ConnectionCallback): NativeListener;
  /** Accepts on any listening stream socket (taken over), bridging each connection. */
  serve(fd: number, onConnection: ConnectionCallback): NativeListener;
  /** Bridges any connected stream socket (taken over, closed on failure too); returns the JavaScript end. */
  bridge(fd: number): number;
  /** dup(2) with close-on-exec. */
  duplicate(fd: number): number;
  /** Bridge threads still running. */
  activeBridges(): number;
}

/** Returns the addon, or undefined when it was not built; throws when it exists but does not load. */
export type VsockLoader = () => VsockAddon | undefined;

/** dist/vsock.node (see native-addon.ts); undefined when it was not built. */
export function loadVsockAddon(): VsockAddon | undefined {
  return loadAddon<VsockAddon>('vsock');
}

/** Wraps the JavaScript end of a bridge; the socket owns (and closes) the fd. */
export function bridgedSocket(fd: number, options: { allowHalfOpen?: boolean } = {}): net.Socket {
  return new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: options.allowHalfOpen ?? false });
}

/**
 * A net.Server whose connections come from a native listener (the accept loop of a vsock
 * socket, or of any listening socket handed to `serve`). It behaves as net.Server does for
 * what the runtime uses: 'connection', 'listening', 'close' (once stopped and every
 * connection has closed), 'error' for failed accepts (when someone listens for it; always
 * when the accept loop has stopped, which also stops the server: `listening` turns false, so
 * an unhandled one ends the process rather than leaving a listener that accepts nothing),
 * close(callback), address() (here the `vsock:CID:PORT` text), ref(), unref(),
 * getConnections(). listen() is not for it: transport.listen starts it.
 */
export class VsockServer extends net.Server {
  private native: NativeListener | undefined;
  private readonly sockets = new Set<net.Socket>();
  private closeEmitted = false;

  constructor(onConnection: (socket: net.Socket) => void) {
    super(onConnection);
    Object.defineProperty(this, 'listening', { get: () => this.native !== undefined, configurable: true });
  }

  /** Starts accepting through `open`, which receives the delivery callback. */
  start(open: (onConnection: ConnectionCallback) => NativeListener): this {
    if (this.native !== undefined || this.closeEmitted) throw new Error('the server was already started');
    this.native = open((error, fd) => this.deliver(error, fd));
    process.nextTick(() => this.emit('listening'));
    return this;
  }

  override address(): string | null {
    const bound = this.native?.address();
    return bound ? formatVsock(bound.cid, bound.port) : null;
  }

  override close(callback?: (error?: Error) => void): this {
    if (this.native === undefined) {
      if (callback !== undefined) {
        const error = Object.assign(new Error('Server is not running.'), { code: 'ERR_SERVER_NOT_RUNNING' });
        process.nextTick(() => callback(error));
      }
      return this;
    }
    this.native.close();
    this.native = undefined;
    if (callback !== undefined) this.once('close', () => callback());
    this.emitCloseIfDrained();
    return this;
  }

  override ref(): this {
    this.native?.ref();
    return this;
  }

  override unref(): this {
    this.native?.unref();
    return this;
  }

  override getConnections(callback: (error: Error | null, count: number) => void): this {
    const count = this.sockets.size;
    process.nextTick(() => callback(null, count));
    return this;
  }

  override listen(): this {
    throw new Error('a VsockServer is started by transport.listen, not by listen()');
  }

  private deliver(error: AcceptError | null, fd?: number): void {
    if (error !== null || fd === undefined) {
      if (error?.fatal === true && this.native !== undefined) {
        this.native.close();
        this.native = undefined;
        this.emit('error', error);
        this.emitCloseIfDrained();
        return;
      }
      // Like net.Server: a failed accept is an 'error' event; the loop goes on where it can.
      if (this.listenerCount('error') > 0) this.emit('error', error ?? new Error('accept delivered no connection'));
      return;
    }
    const socket = bridgedSocket(fd);
    if (this.native === undefined) { // accepted just before close(): not handed out
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    socket.once('close', () => {
      this.sockets.delete(socket);
      this.emitCloseIfDrained();
    });
    this.emit('connection', socket);
  }

  private emitCloseIfDrained(): void {
    if (this.native !== undefined || this.sockets.size > 0 || this.closeEmitted) return;
    this.closeEmitted = true;
    process.nextTick(() => this.emit('close'));
  }
}
