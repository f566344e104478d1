/**
 * The EGP socket daemon against peers that do not play along, over real Unix sockets:
 * connections refused at maxConnections, clients that never read, unterminated lines, clients
 * that shut down their write side, and the socket file's mode. Every wait is for a state of
 * the daemon's sockets, never for a time.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { EnclaveIdentity } from '../../src/abe/handshake';
import type { LocalStack } from '../../src/egp/local-stack';
import { EgpSocketServer, EgpSocketServerOptions } from '../../src/egp/socket-server';
import { parseAddress } from '../../src/protocol/transport';
import { until } from '../sgs/fixtures';
import { useLocalStack } from './helpers';

const peers: net.Socket[] = [];
const servers: EgpSocketServer[] = [];
const dirs: string[] = [];

afterEach(async () => {
  for (const peer of peers.splice(0)) peer.destroy();
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** A daemon on a fresh socket path; with no `stack`, an SGS address nobody listens on (requests that reach a session fail). */
async function daemon(options: Partial<EgpSocketServerOptions> = {}, stack?: LocalStack): Promise<{ server: EgpSocketServer; path: string; accepted: net.Socket[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'egp-peers-'));
  dirs.push(dir);
  const path = join(dir, 'egp.sock');
  const server = await EgpSocketServer.start({
    listen: parseAddress(`unix:${path}`),
    sgs: parseAddress(stack?.sgsAddress ?? `unix:${join(dir, 'no-sgs.sock')}`),
    enclave: stack?.enclave ?? ({} as EnclaveIdentity),
    ...options,
  });
  servers.push(server);
  return { server, path, accepted: acceptedBy(server) };
}

/** The daemon's side of every connection accepted from now on, in order. */
function acceptedBy(server: EgpSocketServer): net.Socket[] {
  const accepted: net.Socket[] = [];
  (server as unknown as { server: net.Server }).server.prependListener('connection', (socket: net.Socket) => accepted.push(socket));
  return accepted;
}

function open(path: string, options: { allowHalfOpen?: boolean } = {}): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection({ path, ...options }, () => resolve(socket));
    peers.push(socket);
    socket.once('error', reject);
  });
}

/** A peer that keeps its side open, sends more than a socket's read buffer, and never reads. */
async function deafPeer(path: string): Promise<net.Socket> {
  const socket = await open(path, { allowHalfOpen: true });
  socket.on('error', () => {});
  socket.pause();
  socket.write(Buffer.alloc(20_000, 'x'));
  return socket;
}

/** The daemon's connection behind its side of a socket (private state, read by these tests only). */
function connectionOf(server: EgpSocketServer, side: net.Socket): { inFlight: number } {
  const connections = (server as unknown as { connections: Set<{ socket: net.Socket; inFlight: number }> }).connections;
  const found = [...connections].find((connection) => connection.socket === side);
  if (found === undefined) throw new Error('no connection for that socket');
  return found;
}

/**
 * Waits until the daemon has stopped taking requests from `side` for good while its peer does
 * not read (reading paused, no call in flight, answers waiting in its buffer), or until what it
 * buffers toward the peer passes `bound`; returns the most it buffered meanwhile.
 */
async function stalled(server: EgpSocketServer, side: net.Socket, bound: number): Promise<number> {
  let most = 0;
  await until(() => {
    most = Math.max(most, side.writableLength);
    return most > bound || (side.isPaused() && side.writableLength > 0 && connectionOf(server, side).inFlight === 0);
  });
  return most;
}

/** Everything a peer receives, as text, whether its read side has ended, and whether it is closed. */
function collect(socket: net.Socket): { text: string; ended: boolean; closed: boolean } {
  const seen = { text: '', ended: false, closed: false };
  socket.setEncoding('utf8');
  socket.on('data', (text: string) => { seen.text += text; });
  socket.on('end', () => { seen.ended = true; });
  socket.on('close', () => { seen.closed = true; });
  return seen;
}

/**
 * A client that allocates a 64 KiB buffer, then stops reading and asks for it 300 times with
 * memcpyDtoH; allAnswered() reads again and checks every answer came, in order.
 */
async function unreadDtohs(stack: LocalStack, options: Partial<EgpSocketServerOptions>) {
  const { server, path, accepted } = await daemon(options, stack);
  const client = await open(path);
  const seen = collect(client);
  const size = 64 * 1024;
  const count = 300;
  client.write(`${JSON.stringify({ id: 0, method: 'malloc', params: { size } })}\n`);
  await until(() => seen.text.includes('\n'));
  const buffer = JSON.parse(seen.text).result.buffer as number;
  seen.text = '';
  client.pause();
  client.write(Array.from({ length: count }, (_, i) => `${JSON.stringify({ id: i + 1, method: 'memcpyDtoH', params: { buffer } })}\n`).join(''));
  return {
    server,
    side: accepted[0],
    answerBytes: `${JSON.stringify({ id: count, result: { data: Buffer.alloc(size).toString('base64') } })}\n`.length,
    async allAnswered() {
      client.resume();
      await until(() => seen.text.split('\n').length > count);
      const answers = seen.text.trimEnd().split('\n').map((line) => JSON.parse(line) as { id: number; result?: { data: string } });
      expect(answers.map((answer) => answer.id)).toEqual(Array.from({ length: count }, (_, i) => i + 1));
      expect(answers.every((answer) => Buffer.from(answer.result!.data, 'base64').length === size)).toBe(true);
    },
  };
}

describe('EGP socket daemon at maxConnections', () => {
  it('answers a connection beyond the limit and closes it on its side, whether the peer reads or not', async () => {
    const { server, path, accepted } = await daemon({ maxConnections: 1 });
    await open(path);
    const reader = collect(await open(path));
    for (let i = 0; i < 5; i++) await deafPeer(path);
    await until(() => accepted.length === 7);
    await until(() => accepted.slice(1).every((socket) => socket.destroyed));
    await until(() => reader.ended);
    expect(JSON.parse(reader.text)).toMatchObject({ id: null, error: { code: 'BAD_REQUEST', reason: 'this EGP serves at most 1 connections' } });
    expect(accepted[0].destroyed).toBe(false);
    expect(server.connectionCount).toBe(1);
  });

  it('closes while refused peers keep their side open', async () => {
    const { server, path, accepted } = await daemon({ maxConnections: 1 });
    await open(path);
    for (let i = 0; i < 5; i++) await deafPeer(path);
    await until(() => accepted.length === 6);
    await server.close();
    expect(accepted.every((socket) => socket.destroyed)).toBe(true);
  });
});

describe('EGP socket daemon toward a client that does not read', () => {
  const stack = useLocalStack();

  it('stops reading requests while answers are waiting to be sent, and serves them all once the client reads', async () => {
    const maxBufferedBytes = 256 * 1024;
    const maxPendingRequests = 4;
    const reads = await unreadDtohs(stack(), { maxBufferedBytes, maxPendingRequests });
    const bound = maxBufferedBytes + maxPendingRequests * reads.answerBytes;
    expect(await stalled(reads.server, reads.side, bound)).toBeLessThanOrEqual(bound);
    await reads.allAnswered();
  });

  it('counts the answers memcpyDtoH calls in flight will bring: many reads of a large buffer stay bounded however many may be pending', async () => {
    const maxBufferedBytes = 256 * 1024;
    const reads = await unreadDtohs(stack(), { maxBufferedBytes, maxPendingRequests: 1024 });
    // Before, up to maxPendingRequests (1024) answers could pile up: all 300 here, about 26 MB.
    const bound = maxBufferedBytes + 2 * reads.answerBytes;
    expect(await stalled(reads.server, reads.side, bound)).toBeLessThanOrEqual(bound);
    await reads.allAnswered();
  });

  it('counts a read behind a launch not yet answered as of unknown size: the launch may resize its buffer', async () => {
    const { server, path, accepted } = await daemon({ maxBufferedBytes: 256 * 1024, maxPendingRequests: 1024 }, stack());
    const client = await open(path);
    const seen = collect(client);
    client.write(`${JSON.stringify({ id: 0, method: 'malloc', params: { size: 4 } })}\n`);
    await until(() => seen.text.includes('\n'));
    const buffer = JSON.parse(seen.text).result.buffer as number;
    // A kernel the client has no effects for may resize every buffer it names; its 4-byte size
    // is out of date from the launch on, though the client hears of the launch only once the
    // line has been passed on, after the reads behind it in the same chunk were counted.
    const launch = { id: 1, method: 'launchKernel', params: { kernel: 'custom.grow', args: { x: buffer }, digest: 'ab'.repeat(48) } };
    const count = 50;
    client.write([launch, ...Array.from({ length: count }, (_, i) => ({ id: i + 2, method: 'memcpyDtoH', params: { buffer } }))].map((line) => `${JSON.stringify(line)}\n`).join(''));
    let most = 0;
    await until(() => {
      if (accepted[0] !== undefined) most = Math.max(most, connectionOf(server, accepted[0]).inFlight);
      return seen.text.split('\n').length > count + 2;
    });
    expect(most).toBeLessThanOrEqual(2); // the launch and one read; before, all 51 at once
  });

  it('counts refused lines as unanswered: a flood of garbage from a client that does not read stays bounded', async () => {
    const maxBufferedBytes = 64 * 1024;
    const maxPendingRequests = 4;
    const { server, path, accepted } = await daemon({ maxBufferedBytes, maxPendingRequests });
    const client = await open(path);
    client.on('error', () => {});
    client.pause();
    const sent = 'x\n'.repeat(200_000);
    client.write(sent);
    await until(() => accepted.length === 1);
    const side = accepted[0];
    const answerBytes = `${JSON.stringify({ id: null, error: { code: 'BAD_REQUEST', reason: 'the line is not JSON' } })}\n`.length;
    const bound = maxBufferedBytes + maxPendingRequests * answerBytes;
    expect(await stalled(server, side, bound)).toBeLessThanOrEqual(bound);
    expect(side.bytesRead).toBeLessThan(sent.length);
  });
});

describe('EGP socket daemon: unfinished request lines', () => {
  it('holds at most maxHeldLineBytes of them across its connections, closing a connection that would pass it', async () => {
    const maxHeldLineBytes = 512 * 1024;
    const { path, accepted } = await daemon({ maxLineBytes: 256 * 1024, maxHeldLineBytes });
    // Less than a socket's buffer, so each client's write is complete before the daemon can refuse it.
    const part = Buffer.alloc(100 * 1024, 'a');
    const clients = await Promise.all(Array.from({ length: 8 }, () => open(path)));
    const seen = clients.map((client) => {
      client.on('error', () => {});
      return collect(client);
    });
    for (const client of clients) client.write(part);
    await until(() => accepted.length === clients.length);
    await until(() => accepted.every((side) => side.destroyed || side.bytesRead === part.length));
    const held = accepted.filter((side) => !side.destroyed).reduce((total, side) => total + side.bytesRead, 0);
    expect(held).toBeLessThanOrEqual(maxHeldLineBytes);
    const refused = seen.filter((_, i) => accepted[i].destroyed);
    expect(refused.length).toBeGreaterThan(0);
    await until(() => refused.every((peer) => peer.closed));
    for (const peer of refused) {
      expect(JSON.parse(peer.text)).toMatchObject({ id: null, error: { code: 'TOO_LARGE' } });
    }

    // What a connection held is released when it closes.
    for (const client of clients) client.destroy();
    await until(() => accepted.every((side) => side.destroyed));
    const next = await open(path);
    next.write(Buffer.alloc(200 * 1024, 'b')); // with what the closed ones held, it would pass the budget
    await until(() => accepted.length === clients.length + 1 && accepted[clients.length].bytesRead === 200 * 1024);
    expect(accepted[clients.length].destroyed).toBe(false);
  });
});

describe('EGP socket daemon toward a client that shuts down its write side', () => {
  const stack = useLocalStack();

  it('answers every request sent before the shutdown, then closes its side', async () => {
    const { path, accepted } = await daemon({}, stack());
    // What `nc -N` and `socat` do: send the requests, then shut down the write side and read.
    const client = await open(path, { allowHalfOpen: true });
    const seen = collect(client);
    const data = Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]).toString('base64');
    client.write(`${JSON.stringify({ id: 1, method: 'malloc', params: { size: 8 } })}\n`);
    client.write(`${JSON.stringify({ id: 2, method: 'memcpyHtoD', params: { buffer: 1, data } })}\n`);
    client.write('not json\n');
    client.end(`${JSON.stringify({ id: 3, method: 'memcpyDtoH', params: { buffer: 1 } })}\n`);
    await until(() => seen.ended);
    const answers = seen.text.trimEnd().split('\n').map((line) => JSON.parse(line) as unknown);
    expect(answers).toEqual([
      { id: null, error: { code: 'BAD_REQUEST', reason: 'the line is not JSON' } },
      { id: 1, result: { buffer: 1 } },
      { id: 2, result: {} },
      { id: 3, result: { data } },
    ]);
    await until(() => accepted[0].destroyed);
  });
});

describe('EGP socket file', () => {
  it('is owner-only (0600), whatever the umask', async () => {
    const umask = process.umask(0);
    let path: string;
    try {
      ({ path } = await daemon());
    } finally {
      process.umask(umask);
    }
    expect((statSync(path).mode & 0o777).toString(8)).toBe('600');
  });
});
