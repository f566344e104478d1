/**
 * SGS against peers that do not play along, over real sockets: connections refused at
 * maxSessions are closed on SGS's side (and do not hold up a drain), an admitted EGP that
 * resends a refused operation without reading the refusals cannot make SGS buffer without
 * bound, and a session that ended lets go of both its sockets (and the ciphertext they hold)
 * even while the peer does not read.
 */
import { randomBytes } from 'node:crypto';
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

/** SGS's connection to the context of its one open session. */
function contextSocketOf(sgs: SgsServer): Socket {
  const sessions = (sgs as unknown as { sessions: Set<{ context?: { socket: Socket } }> }).sessions;
  const [session] = [...sessions];
  return session.context!.socket;
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

describe('SGS toward an EGP that does not read', () => {
  it('stops reading an EGP that resends a refused operation without reading the refusals, and serves it once it reads', async () => {
    const h = harness = await Harness.start(nsm, { maxInFlight: 1, partitions: { default: { gpuShare: 1, memoryCapBytes: 4 << 20, queueBound: 1 } } });
    const accepted = acceptedBy(h.sgs);
    const egp = await h.session();
    const sgsSide = accepted[0];
    h.context.hold = true;
    egp.send(egp.seal(1, { op: 'malloc', buffer: 1, size: 4 }));
    await until(() => h.context.heldCount === 1, 'operation 1 at the context');
    egp.send(egp.seal(2, { op: 'malloc', buffer: 2, size: 4 })); // queued: the queue is at its bound
    await until(() => h.sgs.stats().queued === 1, 'operation 2 queued');
    const [three] = egp.seal(3, { op: 'malloc', buffer: 3, size: 4 });

    egp.socket.pause();
    const resends = 60_000; // each answered BUSY: about 6 MB of refusals if SGS read them all
    const batch = Buffer.concat(Array.from({ length: 1000 }, () => three));
    for (let i = 0; i < resends / 1000; i++) egp.socket.write(batch);
    // Either SGS read every resend, or it stopped reading this EGP (for good: it does not read SGS).
    await until(() => egp.socket.writableLength === 0 || sgsSide.isPaused(), 'SGS to read every resend or stop reading');
    expect(sgsSide.isPaused()).toBe(true);
    expect(sgsSide.writableLength).toBeLessThan(1 << 20);
    expect(sgsSide.listenerCount('drain')).toBeLessThanOrEqual(3);
    expect(h.sgs.stats().sessions).toBe(1);

    // Once the EGP reads again, SGS reads the rest, refuses each resend, and the session goes on.
    egp.socket.resume();
    let busy = 0;
    while (busy < resends) {
      const message = await egp.nextControl();
      expect(message).toMatchObject({ t: 'error', code: 'BUSY', n: 3 });
      busy++;
    }
    expect(sgsSide.listenerCount('drain')).toBeLessThanOrEqual(3);
    h.context.hold = false;
    h.context.release();
    await egp.answer(1);
    await egp.answer(2);
    egp.send([three]);
    expect((await egp.answer(3)).result).toEqual({ ok: true });
  });
});

describe('SGS when a session ends', () => {
  it('destroys its EGP and context sockets even while the EGP does not read its results', async () => {
    const h = harness = await Harness.start(nsm);
    const accepted = acceptedBy(h.sgs);
    const egp = await h.session();
    const egpSide = accepted[0];
    const contextSide = contextSocketOf(h.sgs);
    await egp.call(1, { op: 'malloc', buffer: 1, size: 8 << 20 });
    egp.socket.pause();
    egp.send(egp.seal(2, { op: 'dtoh', buffer: 1 })); // 8 MB of results toward an EGP that does not read
    await until(() => h.context.received.length === 2 && egpSide.writableLength > 0, 'results waiting for the EGP');
    egp.connection.socket.write(encodeControl({ t: 'open' })); // out of place: MALFORMED ends the session
    await until(() => h.sgs.stats().sessions === 0, 'the session to end');
    await until(() => egpSide.destroyed && contextSide.destroyed, 'SGS to let go of both sockets');
  });

  it('counts dispatched ciphertext in bufferedBytes until the context socket has written it, and lets go of it when the session ends', async () => {
    // The deadline is what ends the session: while the context does not read, SGS does not read the EGP either.
    const h = harness = await Harness.start(nsm, { maxInFlight: 1, deadlineMs: 5_000, maxBufferedBytes: 8 << 20, partitions: { default: { gpuShare: 1, memoryCapBytes: 8 << 20, queueBound: 4 } } });
    const egp = await h.session();
    const contextSide = contextSocketOf(h.sgs);
    const contextPeer = h.context.accepted[h.context.accepted.length - 1];
    h.context.hold = true;
    egp.send(egp.seal(1, { op: 'malloc', buffer: 1, size: 6 << 20 }));
    await until(() => h.context.heldCount === 1, 'operation 1 at the context');
    const data = randomBytes(6 << 20);
    egp.send(egp.seal(2, { op: 'htod', buffer: 1, size: data.length }, data)); // waits for the slot: held whole
    await until(() => h.sgs.stats().bufferedBytes > data.length, 'operation 2 held whole');

    contextPeer.pause(); // the context stops reading this session
    h.context.release(); // operation 1 done: operation 2 goes into SGS's socket to the context
    await egp.answer(1);
    await until(() => h.sgs.stats().queued === 0, 'operation 2 dispatched');
    expect(contextSide.writableLength).toBeGreaterThan(0);
    expect(h.sgs.stats().bufferedBytes).toBeGreaterThan(0); // still in SGS's memory, waiting for the context

    expect(await egp.expectError('TIMEOUT')).toMatchObject({ n: 2 });
    await until(() => contextSide.destroyed, 'SGS to let go of the context socket');
    await until(() => h.sgs.stats().bufferedBytes === 0, 'the ciphertext to be let go');
    expect(h.sgs.stats().sessions).toBe(0);
  });
});
