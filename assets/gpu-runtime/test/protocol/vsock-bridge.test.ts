/**
 * The vsock addon's bridge and accept loop, over real TCP and Unix sockets (never AF_VSOCK:
 * see vsock-helpers.ts). Skipped when dist/vsock.node was not built.
 */
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import * as net from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { VsockServer } from '../../src/protocol/vsock';
import { NO_ADDON, PairKind, addon, bridgedPair, eventually, fdOf, openFdCount, readAll, removeScratch } from './vsock-helpers';

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** Writes `data` in pieces of random sizes, honouring backpressure, then ends the socket. */
async function writeAll(socket: net.Socket, data: Buffer): Promise<void> {
  let offset = 0;
  while (offset < data.length) {
    const end = Math.min(data.length, offset + 1 + Math.floor(Math.random() * 256 * 1024));
    if (!socket.write(data.subarray(offset, end))) await once(socket, 'drain');
    offset = end;
  }
  socket.end();
}

function bridgesIdle(baseline: number): Promise<void> {
  return eventually(() => addon!.activeBridges() === baseline, `the bridge threads to end (still ${addon!.activeBridges() - baseline})`);
}

describe.skipIf(addon === undefined)(`the vsock bridge over real sockets (skipped if ${NO_ADDON})`, () => {
  afterAll(removeScratch);

  it.each<PairKind>(['tcp', 'unix'])('echoes both ways over %s and ends its thread when both sides have ended', async (kind) => {
    const baseline = addon!.activeBridges();
    const { peer, local } = await bridgedPair(kind);
    expect(addon!.activeBridges()).toBe(baseline + 1);
    local.on('data', (chunk: Buffer) => local.write(chunk));
    const echoed = readAll(peer);
    const closed = once(local, 'close');
    peer.end(Buffer.from('hello through the bridge'));
    expect((await echoed).toString()).toBe('hello through the bridge');
    await closed;
    await bridgesIdle(baseline);
  });

  it('moves 16 MiB each way at once, intact (SHA-256), in uneven pieces', async () => {
    const { peer, local } = await bridgedPair('tcp', { allowHalfOpen: true }); // each side ends when it has sent all
    const up = randomBytes(16 * 1024 * 1024);
    const down = randomBytes(16 * 1024 * 1024);
    const [atLocal, atPeer] = await Promise.all([readAll(local), readAll(peer), writeAll(peer, up), writeAll(local, down)]);
    expect(atLocal.length).toBe(up.length);
    expect(sha256(atLocal)).toBe(sha256(up));
    expect(atPeer.length).toBe(down.length);
    expect(sha256(atPeer)).toBe(sha256(down));
  });

  it('passes the peer\'s half-close on, and the JavaScript side can still answer', async () => {
    const baseline = addon!.activeBridges();
    const { peer, local } = await bridgedPair('tcp', { allowHalfOpen: true });
    const request = readAll(local);
    peer.end('request');
    expect((await request).toString()).toBe('request'); // local saw the end
    const answer = readAll(peer);
    local.end('answer after the peer finished');
    expect((await answer).toString()).toBe('answer after the peer finished');
    await bridgesIdle(baseline);
  });

  it('passes the JavaScript side\'s half-close on, and the peer can still answer', async () => {
    const baseline = addon!.activeBridges();
    const { peer, local } = await bridgedPair('unix', { allowHalfOpen: true });
    const request = readAll(peer);
    local.end('request');
    expect((await request).toString()).toBe('request');
    const answer = readAll(local);
    peer.end('answer after the local side finished');
    expect((await answer).toString()).toBe('answer after the local side finished');
    await bridgesIdle(baseline);
  });

  it('closes the JavaScript side when the peer resets the connection', async () => {
    const baseline = addon!.activeBridges();
    const { peer, local } = await bridgedPair('tcp');
    const closed = once(local, 'close');
    local.on('error', () => undefined);
    local.resume();
    peer.write('some bytes first');
    peer.resetAndDestroy();
    await closed;
    await bridgesIdle(baseline);
  });

  it('resets the peer when the JavaScript side is gone and the peer keeps sending', async () => {
    const baseline = addon!.activeBridges();
    const { peer, local } = await bridgedPair('tcp', { allowHalfOpen: true });
    local.destroy();
    // The bridge first passes the end on (the peer reads end-of-file) ...
    await once(peer.resume(), 'end');
    // ... then, with nowhere to put what the peer still sends, resets the connection.
    const failed = new Promise<NodeJS.ErrnoException>((resolve) => peer.once('error', resolve));
    const timer = setInterval(() => peer.write(Buffer.alloc(64 * 1024)), 5);
    const error = await failed;
    clearInterval(timer);
    expect(['ECONNRESET', 'EPIPE']).toContain(error.code);
    await bridgesIdle(baseline);
  });

  it('ends its thread when the JavaScript side is gone while the peer stays connected and silent', async () => {
    const baseline = addon!.activeBridges();
    const { peer, local } = await bridgedPair('tcp', { allowHalfOpen: true });
    local.destroy();
    await once(peer.resume(), 'end'); // the end is passed on; the peer neither sends nor closes
    await bridgesIdle(baseline); // before this fix the thread waited for the peer as long as it stayed
    peer.destroy();
  });

  it('keeps its thread while the JavaScript side has only half-closed, and delivers what the peer sends after', async () => {
    const baseline = addon!.activeBridges();
    const { peer, local } = await bridgedPair('unix', { allowHalfOpen: true });
    const received = readAll(local);
    let seen = '';
    local.on('data', (chunk: Buffer) => { seen += chunk.toString(); });
    local.end();
    await once(peer.resume(), 'end');
    peer.write('still bridged');
    await eventually(() => seen === 'still bridged', 'bytes the peer sends after the half-close to reach the JavaScript side');
    expect(addon!.activeBridges()).toBe(baseline + 1);
    peer.end(', and then ended');
    expect((await received).toString()).toBe('still bridged, and then ended');
    await bridgesIdle(baseline);
  });

  it('runs 50 bridged connections at once, each intact', async () => {
    const baseline = addon!.activeBridges();
    const pairs = await Promise.all(Array.from({ length: 50 }, (_, i) => bridgedPair(i % 2 === 0 ? 'tcp' : 'unix')));
    expect(addon!.activeBridges()).toBe(baseline + 50);
    await Promise.all(pairs.map(async ({ peer, local }) => {
      local.on('data', (chunk: Buffer) => local.write(chunk));
      local.on('end', () => local.end());
      const data = randomBytes(256 * 1024);
      const [echoed] = await Promise.all([readAll(peer), writeAll(peer, data)]);
      expect(sha256(echoed)).toBe(sha256(data));
    }));
    await bridgesIdle(baseline);
  });

  it('leaks no descriptor: 50 connections opened, used and closed leave the fd table as it was', async () => {
    // Warm up whatever Node opens once (the first socketpair, the thread pool, ...).
    const warm = await bridgedPair('tcp');
    warm.peer.destroy();
    warm.local.destroy();
    await bridgesIdle(0);
    const before = openFdCount();
    const kinds = Array.from({ length: 50 }, (_, i): PairKind => (i % 2 === 0 ? 'tcp' : 'unix'));
    const pairs = await Promise.all(kinds.map((kind) => bridgedPair(kind)));
    // Per pair: the peer and the JavaScript end, the bridge's external socket and its socketpair end.
    expect(openFdCount()).toBe(before + 4 * 50);
    await Promise.all(pairs.map(async ({ peer, local }, i) => {
      local.on('data', (chunk: Buffer) => local.write(chunk));
      const echoed = once(peer, 'data');
      peer.write('ping');
      await echoed;
      // Half of them end cleanly, half are torn down abruptly from either side.
      const closed = Promise.all([once(peer, 'close'), once(local, 'close')]);
      peer.on('error', () => undefined);
      local.on('error', () => undefined);
      const ending = i % 4;
      if (ending < 2) peer.end();
      else if (ending === 2) kinds[i] === 'tcp' ? peer.resetAndDestroy() : peer.destroy();
      else local.destroy();
      await closed;
    }));
    await bridgesIdle(0);
    await eventually(() => openFdCount() === before, `the fd count to return to ${before} (now ${openFdCount()})`);
  });

  it('refuses what is not a connected stream socket, with errno codes, and takes the fd over', async () => {
    // Not descriptor numbers (read as int32 they would all be 0, standard input):
    for (const bad of [-1, Number.NaN, 0.5, 2 ** 32, 2 ** 31]) expect(() => addon!.bridge(bad)).toThrow(/fd must be a non-negative integer/);
    const notOpen = 1_000_000;
    expect(() => addon!.bridge(notOpen)).toThrow(expect.objectContaining({ code: 'EBADF', syscall: 'getsockopt' }));
    // A listening socket is a stream socket, but bridging it would serve no one: the bridge
    // copies until its first read fails, then closes. A datagram socket is refused at once.
    const dgram = await import('node:dgram');
    const udp = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', resolve));
    const fd = addon!.duplicate((udp as unknown as { _handle: { fd: number } })._handle.fd);
    const before = openFdCount();
    expect(() => addon!.bridge(fd)).toThrow(expect.objectContaining({ code: 'EPROTOTYPE' }));
    expect(openFdCount()).toBe(before - 1); // closed, as promised
    udp.close();
  });

  it('serves any listening socket through the native accept loop (VsockServer)', async () => {
    const baseline = addon!.activeBridges();
    const holder = net.createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const port = (holder.address() as net.AddressInfo).port;
    const fd = addon!.duplicate(fdOf(holder));
    await new Promise<void>((resolve) => holder.close(() => resolve()));
    const accepted: net.Socket[] = [];
    const server = new VsockServer((socket) => {
      accepted.push(socket);
      socket.on('data', (chunk: Buffer) => socket.write(chunk));
      socket.on('end', () => socket.end());
    }).start((deliver) => addon!.serve(fd, deliver));
    await once(server, 'listening');
    expect(server.listening).toBe(true);
    expect(server.address()).toBeNull(); // a TCP socket has no vsock address

    const clients = await Promise.all(Array.from({ length: 10 }, async (_, i) => {
      const client = net.createConnection(port, '127.0.0.1');
      const echoed = readAll(client);
      client.end(`client ${i}`);
      expect((await echoed).toString()).toBe(`client ${i}`);
      return client;
    }));
    expect(accepted).toHaveLength(10);
    expect(clients).toHaveLength(10);

    // close() stops accepting at once; its callback waits for the connections (all ended here).
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    await closed;
    expect(server.listening).toBe(false);
    const refused = net.createConnection(port, '127.0.0.1');
    const error = await new Promise<NodeJS.ErrnoException>((resolve) => refused.once('error', resolve));
    expect(error.code).toBe('ECONNREFUSED');
    await bridgesIdle(baseline);
    const notRunning = await new Promise<Error | undefined>((resolve) => server.close(resolve));
    expect(notRunning).toMatchObject({ code: 'ERR_SERVER_NOT_RUNNING' });
  });

  it('keeps close() waiting while a connection is open, like net.Server', async () => {
    const holder = net.createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const port = (holder.address() as net.AddressInfo).port;
    const fd = addon!.duplicate(fdOf(holder));
    await new Promise<void>((resolve) => holder.close(() => resolve()));
    let connection: net.Socket | undefined;
    const server = new VsockServer((socket) => { connection = socket; }).start((deliver) => addon!.serve(fd, deliver));
    const client = net.createConnection(port, '127.0.0.1');
    await eventually(() => connection !== undefined, 'the connection');
    let closed = false;
    server.close(() => { closed = true; });
    let count = -1;
    server.getConnections((_error, n) => { count = n; });
    await eventually(() => count === 1, 'getConnections');
    expect(closed).toBe(false); // the connection is still open, so close() has not called back
    client.destroy();
    connection!.resume();
    await eventually(() => closed, 'close() to call back once the connection ended');
  });

  it('serve() refuses a socket that is not listening, and bad callbacks', async () => {
    // (connect and listen are never called on the real addon here: they would reach AF_VSOCK.)
    const { peer, local } = await bridgedPair('tcp');
    expect(() => addon!.serve(fdOf(peer), () => undefined)).toThrow(/fd must be a listening stream socket/);
    const holder = net.createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    expect(() => addon!.serve(fdOf(holder), 'not a function' as never)).toThrow(/onConnection must be a function/);
    holder.close();
    peer.destroy();
    local.destroy();
  });
});
