/**
 * The EGP socket daemon against peers that do not play along, over real Unix sockets:
 * connections refused at maxConnections, clients that never read, unterminated lines, clients
 * that shut down their write side, and the socket file's mode. Every wait is for a state of
 * the daemon's sockets, never for a time.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { EnclaveIdentity } from '../../src/abe/handshake';
import type { LocalStack } from '../../src/egp/local-stack';
import { EgpSocketServer, EgpSocketServerOptions } from '../../src/egp/socket-server';
import { parseAddress } from '../../src/protocol/transport';

/** Resolves once `condition` holds, checking every few milliseconds; the test's timeout is the only limit. */
async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 2));
}

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

/** Everything a peer receives, as text, and whether its read side has ended. */
function collect(socket: net.Socket): { text: string; ended: boolean } {
  const seen = { text: '', ended: false };
  socket.setEncoding('utf8');
  socket.on('data', (text: string) => { seen.text += text; });
  socket.on('end', () => { seen.ended = true; });
  return seen;
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
