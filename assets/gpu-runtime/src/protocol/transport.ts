/**
 * Where the runtime's processes listen and connect, behind one address syntax:
 *
 *   unix:/run/egpu/sgs.sock      local mode and host-local links (SGS <-> context)
 *   tcp:127.0.0.1:7410           local mode, tests
 *   vsock:3:7410                 production: the enclave reaches its parent at CID 3
 *
 * AF_VSOCK is not reachable from Node without a native binding, and on the build machines
 * the vsock device belongs to the machine itself, so vsock addresses are parsed and refused
 * with a clear error rather than attempted.
 */
import * as net from 'node:net';
import { RuntimeError } from '../errors';

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
  const vsock = /^vsock:(\d{1,10}):(\d{1,10})$/.exec(text);
  if (vsock && Number(vsock[1]) <= 0xffff_ffff && Number(vsock[2]) <= 0xffff_ffff) {
    return { kind: 'vsock', cid: Number(vsock[1]), port: Number(vsock[2]) };
  }
  throw new TransportError('ADDRESS', `'${text}' is not an address: use unix:/path, tcp:host:port or vsock:cid:port`);
}

export function formatAddress(address: Address): string {
  switch (address.kind) {
    case 'unix': return `unix:${address.path}`;
    case 'tcp': return `tcp:${address.host}:${address.port}`;
    case 'vsock': return `vsock:${address.cid}:${address.port}`;
  }
}

/** Connects to an address; the socket has Nagle's algorithm off (small records matter). */
export function connect(address: Address): Promise<net.Socket> {
  refuseVsock(address);
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

/** Listens on an address and hands each connection to `onConnection`. */
export function listen(address: Address, onConnection: (socket: net.Socket) => void): Promise<net.Server> {
  refuseVsock(address);
  return new Promise((resolve, reject) => {
    const server = net.createServer({ noDelay: true }, onConnection);
    server.once('error', (error) => reject(new TransportError('LISTEN', `cannot listen on ${formatAddress(address)}: ${error.message}`)));
    const ready = () => resolve(server);
    if (address.kind === 'unix') server.listen(address.path, ready);
    else server.listen(address.port, address.host, ready);
  });
}

function refuseVsock(address: Address): asserts address is Exclude<Address, { kind: 'vsock' }> {
  if (address.kind === 'vsock') {
    throw new TransportError(
      'VSOCK_UNAVAILABLE',
      `${formatAddress(address)}: AF_VSOCK is not supported by this build (no native vsock binding yet); inside an enclave, bridge it to a Unix socket with socat or vsock-proxy, or use unix: or tcp: in local mode`,
    );
  }
}
