/**
 * RecordConnection over a real socket pair: while the peer does not read, send() resolves
 * once the socket drains, with one 'drain' listener however many records wait for it.
 */
import { createServer, connect, Server, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { RecordConnection } from '../../src/protocol/record-connection';
import { encodeControl } from '../../src/protocol/control';
import { eventually } from './vsock-helpers';

const open: Array<{ server: Server; sockets: Socket[] }> = [];

afterEach(async () => {
  for (const { server, sockets } of open.splice(0)) {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  }
});

/** Two connected sockets over loopback TCP. */
async function socketPair(): Promise<[Socket, Socket]> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
  const client = connect((server.address() as { port: number }).port, '127.0.0.1');
  await new Promise((resolve) => client.once('connect', resolve));
  const peer = await accepted;
  open.push({ server, sockets: [client, peer] });
  return [client, peer];
}

const ignore = { onFrame: () => {}, onControl: () => {}, onClose: () => {} };

describe('RecordConnection.send', () => {
  it('waits for the drain with one listener, however many records are sent while the socket is full', async () => {
    const [socket, peer] = await socketPair();
    peer.pause(); // the peer does not read
    const connection = new RecordConnection(socket, ignore);
    const record = encodeControl({ t: 'error', code: 'BUSY', reason: 'x'.repeat(500), n: 1, retryAfterMs: 1 });
    let sent = 0;
    let written = 0;
    while (!socket.writableNeedDrain) {
      void connection.send(record, () => { written++; });
      sent++;
    }
    const waiting: Array<Promise<void>> = [];
    for (let i = 0; i < 1000; i++) waiting.push(connection.send(record, () => { written++; }));
    sent += waiting.length;
    expect(socket.writableNeedDrain).toBe(true);
    expect(socket.listenerCount('drain')).toBe(1); // every send since the socket filled shares it

    let received = 0;
    peer.on('data', (chunk: Buffer) => { received += chunk.length; });
    peer.resume();
    await Promise.all(waiting); // resolve once the peer reads again
    expect(socket.listenerCount('drain')).toBe(0);
    await eventually(() => written === sent && received === sent * record.length, 'every record written and received');
  });
});
