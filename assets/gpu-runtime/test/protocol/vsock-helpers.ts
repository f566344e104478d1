/**
 * Shared by the vsock tests. Nothing here touches AF_VSOCK: on the build machines the vsock
 * device belongs to the machine itself. The addon's bridge and accept loop are exercised
 * with TCP and Unix sockets instead (bridge() and serve() take any stream socket), and
 * `tcpBackedAddon` stands in for vsock behind the real addon's other functions.
 */
import { once } from 'node:events';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { ConnectionCallback, NativeListener, VsockAddon, bridgedSocket, loadVsockAddon } from '../../src/protocol/vsock';

/** The built addon, or undefined (the tests that need it are skipped). */
export const addon = loadVsockAddon();

/** Why the addon tests are skipped, when they are. */
export const NO_ADDON = 'dist/vsock.node is not built (node assets/gpu-runtime/build.mjs builds it; CI does)';

if (addon === undefined) console.warn(`vsock tests: ${NO_ADDON}; the tests that need it are skipped`);

/** The fd under a Node socket or server (POSIX: every libuv stream handle has one). */
export function fdOf(handleOwner: net.Socket | net.Server): number {
  const fd = (handleOwner as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('no fd under this socket');
  return fd;
}

export type PairKind = 'tcp' | 'unix';

export interface BridgedPair {
  /** A plain socket: the far end, where a vsock peer would be. */
  readonly peer: net.Socket;
  /** The JavaScript end of the bridge. */
  readonly local: net.Socket;
}

let unixCounter = 0;
let scratch: string | undefined;

function unixPath(): string {
  scratch ??= mkdtempSync(path.join(tmpdir(), 'egpu-vsock-test-'));
  return path.join(scratch, `s${unixCounter++}.sock`);
}

export function removeScratch(): void {
  if (scratch !== undefined) rmSync(scratch, { recursive: true, force: true });
  scratch = undefined;
}

/**
 * A connected stream socket pair with the bridge in the middle:
 * peer <-(tcp or unix)-> [external fd] <-bridge thread-> [socketpair] <-> local.
 * The accepted socket's fd is duplicated and its Node socket closed, so the bridge owns the
 * only descriptor (Node never read from it: pauseOnConnect).
 */
export async function bridgedPair(kind: PairKind, options: { allowHalfOpen?: boolean } = {}): Promise<BridgedPair> {
  const allowHalfOpen = options.allowHalfOpen ?? false;
  const server = net.createServer({ pauseOnConnect: true });
  const where = kind === 'unix' ? unixPath() : 0;
  await new Promise<void>((resolve) => (kind === 'unix' ? server.listen(where as string, resolve) : server.listen(0, '127.0.0.1', resolve)));
  const accepted = once(server, 'connection') as Promise<[net.Socket]>;
  const peer = kind === 'unix'
    ? net.createConnection({ path: where as string, allowHalfOpen })
    : net.createConnection({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen });
  await once(peer, 'connect');
  const [serverSide] = await accepted;
  const fd = addon!.duplicate(fdOf(serverSide));
  serverSide.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  const local = bridgedSocket(addon!.bridge(fd), { allowHalfOpen });
  return { peer, local };
}

/** Everything a socket reads until its end. */
export function readAll(socket: net.Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.once('end', () => resolve(Buffer.concat(chunks)));
    socket.once('error', reject);
  });
}

/** Waits until `predicate` holds (polling), failing after `timeoutMs`. */
export async function eventually(predicate: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

export function openFdCount(): number {
  return readdirSync('/proc/self/fd').length;
}

/**
 * The real addon with vsock swapped for TCP on 127.0.0.1: connect(cid, port) connects to
 * the TCP port `port` and bridges; listen(cid, port, ...) listens on an ephemeral TCP port
 * and serves it through the addon's accept loop. `calls` records what transport asked for.
 */
export function tcpBackedAddon(real: VsockAddon): { addon: VsockAddon; calls: string[]; ports: Map<number, number> } {
  const calls: string[] = [];
  /** vsock port -> the TCP port standing in for it. */
  const ports = new Map<number, number>();
  const fake: VsockAddon = {
    ...real,
    async connect(cid, port) {
      calls.push(`connect ${cid}:${port}`);
      const tcpPort = ports.get(port);
      if (tcpPort === undefined) throw Object.assign(new Error('connect: Connection refused'), { code: 'ECONNREFUSED' });
      const socket = net.createConnection({ port: tcpPort, host: '127.0.0.1' });
      socket.pause(); // Node must not read what belongs to the bridge
      await once(socket, 'connect');
      const fd = real.duplicate(fdOf(socket));
      socket.destroy();
      return real.bridge(fd);
    },
    listen(cid: number, port: number, backlog: number, onConnection: ConnectionCallback): NativeListener {
      calls.push(`listen ${cid}:${port} backlog ${backlog}`);
      const holder = net.createServer({ pauseOnConnect: true });
      // Without a host, listen() binds at once (no lookup), so the handle exists now: on
      // every interface, for the moment the test needs it.
      holder.listen(0);
      const fd = real.duplicate(fdOf(holder));
      ports.set(port, (holder.address() as net.AddressInfo).port);
      holder.close();
      return real.serve(fd, onConnection);
    },
  };
  return { addon: fake, calls, ports };
}
