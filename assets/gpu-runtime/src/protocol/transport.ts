/**
 * Where the runtime's processes listen and connect, behind one address syntax:
 *
 *   unix:/run/egpu/sgs.sock      local mode and host-local links (SGS <-> context)
 *   tcp:127.0.0.1:7410           local mode, tests
 *   vsock:3:7410                 production: the enclave reaches its parent at CID 3
 *   vsock:any:7410               listening on the parent (VMADDR_CID_ANY)
 *
 * Every address gives the same thing: a net.Socket to connect, a net.Server to listen.
 * AF_VSOCK goes through the native addon (dist/vsock.node, see vsock.ts and native/vsock.c),
 * which bridges each vsock connection to a Unix socketpair that Node can wrap. Without the
 * addon, or where the kernel has no vsock transport, vsock addresses fail with
 * VSOCK_UNAVAILABLE, a message naming the address, the reason and the fix.
 *
 * With EGPU_VSOCK=off the default addon is not used at all: on the build machines the vsock
 * device belongs to the machine itself, so nothing there may connect to or listen on a vsock
 * address (vitest.config.mts sets it for every test and the processes they start). Tests
 * inject the addon they want.
 */
import * as net from 'node:net';
import { RuntimeError } from '../errors';
import { VSOCK_ANY, VsockAddon, VsockLoader, VsockServer, bridgedSocket, formatVsock, loadVsockAddon } from './vsock';

export type Address =
  | { kind: 'unix'; path: string }
  | { kind: 'tcp'; host: string; port: number }
  | { kind: 'vsock'; cid: number; port: number };

export class TransportError extends RuntimeError {}

export function parseAddress(text: string): Address {
  const unix = /^unix:(\/.+)$/.exec(text);
  if (unix) return { kind: 'unix', path: unix[1] };
  const tcp = /^tcp:([^:]+):(\d{1,5})$/.exec(text);
  if (tcp && Number(tcp[2]) <= 65535) return { kind: 'tcp', host: tcp[1], port: Number(tcp[2]) };
  const vsock = /^vsock:(\d{1,10}|any):(\d{1,10})$/.exec(text);
  if (vsock) {
    const cid = vsock[1] === 'any' ? VSOCK_ANY : Number(vsock[1]);
    const port = Number(vsock[2]);
    if (cid > VSOCK_ANY) throw new TransportError('ADDRESS', `'${text}': the vsock CID must be at most ${VSOCK_ANY} (or any)`);
    if (port > VSOCK_ANY) throw new TransportError('ADDRESS', `'${text}': the vsock port must be at most ${VSOCK_ANY}`);
    return { kind: 'vsock', cid, port };
  }
  throw new TransportError('ADDRESS', `'${text}' is not an address: use unix:/path, tcp:host:port or vsock:cid:port`);
}

export function formatAddress(address: Address): string {
  switch (address.kind) {
    case 'unix': return `unix:${address.path}`;
    case 'tcp': return `tcp:${address.host}:${address.port}`;
    case 'vsock': return formatVsock(address.cid, address.port);
  }
}

/** Where connect and listen find the vsock addon; tests inject theirs. */
export interface TransportOptions {
  /** Defaults to dist/vsock.node, or none with EGPU_VSOCK=off. */
  readonly vsock?: VsockLoader;
}

/** How many connections a vsock listener lets the kernel queue. */
const VSOCK_BACKLOG = 128;

/** Connects to an address; the socket has Nagle's algorithm off (small records matter). */
export function connect(address: Address, options: TransportOptions = {}): Promise<net.Socket> {
  if (address.kind === 'vsock') return connectVsock(address, options);
  return new Promise((resolve, reject) => {
    const socket = address.kind === 'unix' ? net.createConnection(address.path) : net.createConnection(address.port, address.host);
    socket.once('connect', () => {
      socket.off('error', reject);
      if (address.kind === 'tcp') socket.setNoDelay(true);
      resolve(socket);
    });
    socket.once('error', (error) => reject(new TransportError('CONNECT', `cannot connect to ${formatAddress(address)}: ${error.message}`)));
  });
}

/**
 * Listens on an address and hands each connection to `onConnection`. A vsock address gives
 * a VsockServer: a net.Server whose close() and address() behave alike (address() is the
 * `vsock:CID:PORT` text).
 */
export function listen(address: Address, onConnection: (socket: net.Socket) => void, options: TransportOptions = {}): Promise<net.Server> {
  if (address.kind === 'vsock') return listenVsock(address, onConnection, options);
  return new Promise((resolve, reject) => {
    const server = net.createServer({ noDelay: true }, onConnection);
    server.once('error', (error) => reject(new TransportError('LISTEN', `cannot listen on ${formatAddress(address)}: ${error.message}`)));
    const ready = () => resolve(server);
    if (address.kind === 'unix') server.listen(address.path, ready);
    else server.listen(address.port, address.host, ready);
  });
}

type VsockAddress = Extract<Address, { kind: 'vsock' }>;

async function connectVsock(address: VsockAddress, options: TransportOptions): Promise<net.Socket> {
  const text = formatAddress(address);
  if (address.cid === VSOCK_ANY) throw new TransportError('ADDRESS', `${text}: 'any' is a CID to listen on, not to connect to (the parent is CID 3)`);
  if (address.port === VSOCK_ANY) throw new TransportError('ADDRESS', `${text}: port ${VSOCK_ANY} (any) is not a port to connect to`);
  const addon = vsockAddon(text, options);
  let fd: number;
  try {
    fd = await addon.connect(address.cid, address.port);
  } catch (error) {
    throw vsockFailure(text, 'CONNECT', `cannot connect to ${text}`, error);
  }
  return bridgedSocket(fd);
}

async function listenVsock(address: VsockAddress, onConnection: (socket: net.Socket) => void, options: TransportOptions): Promise<net.Server> {
  const text = formatAddress(address);
  const addon = vsockAddon(text, options);
  const server = new VsockServer(onConnection);
  try {
    server.start((deliver) => addon.listen(address.cid, address.port, VSOCK_BACKLOG, deliver));
  } catch (error) {
    throw vsockFailure(text, 'LISTEN', `cannot listen on ${text}`, error);
  }
  return server;
}

/** errno codes that mean "no AF_VSOCK here", as opposed to a peer or port that fails. */
const UNAVAILABLE_ERRNO = new Set(['EAFNOSUPPORT', 'EPROTONOSUPPORT', 'ESOCKTNOSUPPORT', 'ENODEV']);

function vsockFailure(text: string, code: 'CONNECT' | 'LISTEN', what: string, error: unknown): TransportError {
  const errno = (error as NodeJS.ErrnoException).code;
  const message = error instanceof Error ? error.message : String(error);
  if (errno !== undefined && UNAVAILABLE_ERRNO.has(errno)) {
    return new TransportError('VSOCK_UNAVAILABLE', `${text}: AF_VSOCK is not available on this machine (${message}); ${VSOCK_KERNEL_FIX}`);
  }
  return new TransportError(code, `${what}: ${message}`);
}

const VSOCK_KERNEL_FIX = 'run inside a Nitro enclave or on its parent instance (nitro-enclaves-allocator loads the vsock driver), or use unix: or tcp: in local mode';

/** The addon to use for `text`, or VSOCK_UNAVAILABLE saying why there is none and what to do. */
function vsockAddon(text: string, options: TransportOptions): VsockAddon {
  let addon: VsockAddon | undefined;
  let failure: string | undefined;
  if (options.vsock === undefined && process.env.EGPU_VSOCK === 'off') {
    failure = 'vsock is switched off by EGPU_VSOCK=off: nothing here may reach a vsock address; use unix: or tcp:';
  } else {
    try {
      addon = (options.vsock ?? loadVsockAddon)();
    } catch (error) {
      failure = `dist/vsock.node does not load (${(error as Error).message}); rebuild it with npm run build:runtime`;
    }
  }
  if (addon === undefined) {
    throw new TransportError('VSOCK_UNAVAILABLE', `${text}: AF_VSOCK is not available: ${failure ?? NO_ADDON}`);
  }
  return addon;
}

const NO_ADDON = 'this build has no vsock addon (dist/vsock.node); build the runtime where a C toolchain and Node\'s headers are installed (npm run build:runtime), or use unix: or tcp: in local mode';
