/**
 * SGS against peers that do not play along, over real sockets: connections refused at
 * maxSessions are closed on SGS's side (and do not hold up a drain).
 */
import { connect, Server, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { SimulatedNsm } from '../../src/attestation/simulated-nsm';
import { encodeControl } from '../../src/protocol/control';
import { SgsServer } from '../../src/sgs/server';
import { FakeEgp } from './fake-egp';
import { IMAGE_PCRS, until } from './fixtures';
import { Harness } from './harness';

const nsm = SimulatedNsm.create();
let harness: Harness | undefined;
const peers: Socket[] = [];

afterEach(async () => {
  for (const peer of peers.splice(0)) peer.destroy();
  await harness?.stop();
  harness = undefined;
});

/** SGS's side of every enclave connection accepted from now on, in order. */
function acceptedBy(sgs: SgsServer): Socket[] {
  const accepted: Socket[] = [];
  (sgs as unknown as { enclaveServer: Server }).enclaveServer.prependListener('connection', (socket: Socket) => accepted.push(socket));
  return accepted;
}

/** A peer that connects, sends {t: open} and more, and never reads what SGS answers. */
async function deafPeer(path: string): Promise<Socket> {
  const socket = connect(path);
  peers.push(socket);
  socket.on('error', () => {});
  await new Promise((resolve) => socket.once('connect', resolve));
  socket.pause();
  socket.write(encodeControl({ t: 'open' }));
  socket.write(Buffer.alloc(20_000, 1)); // more than a socket's read buffer: unread, it would hold the connection
  return socket;
}

describe('SGS at maxSessions', () => {
  it('answers BUSY to a connection beyond maxSessions and closes it on its side, whether the peer reads or not', async () => {
    const h = harness = await Harness.start(nsm, { maxSessions: 1 });
    await h.session();
    const accepted = acceptedBy(h.sgs);

    const egp = await FakeEgp.connect(h.workspace.enclaveSocket);
    const outcome = await egp.open({ nsm, pcrs: IMAGE_PCRS });
    expect(outcome).toMatchObject({ ready: false, error: { code: 'BUSY', retryAfterMs: 1000 } });
    await egp.expectClosed();

    for (let i = 0; i < 5; i++) await deafPeer(h.workspace.enclaveSocket);
    await until(() => accepted.length === 6, 'SGS to accept every connection');
    await until(() => accepted.every((socket) => socket.destroyed), 'SGS to close every refused connection');
    expect(h.sgs.stats().sessions).toBe(1);
  });

  it('drains while refused peers keep their connections open', async () => {
    const h = harness = await Harness.start(nsm, { maxSessions: 1 });
    const egp = await h.session();
    const accepted = acceptedBy(h.sgs);
    for (let i = 0; i < 5; i++) await deafPeer(h.workspace.enclaveSocket);
    await until(() => accepted.length === 5, 'SGS to accept every connection');
    await h.sgs.drain(0);
    expect(accepted.every((socket) => socket.destroyed)).toBe(true);
    expect(await egp.next()).toMatchObject({ kind: 'closed' });
  });
});
