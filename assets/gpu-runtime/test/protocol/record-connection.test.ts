/**
 * RecordConnection over a real socket pair: while the peer does not read, send() resolves
 * once the socket drains, with one 'drain' listener however many records wait for it; a
 * record refused with a long reason is answered with a bounded one, and nothing throws.
 */
import type { Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { RecordConnection } from '../../src/protocol/record-connection';
import { ControlMessage, decodeControl, encodeControl } from '../../src/protocol/control';
import type { WireError } from '../../src/protocol/wire-error';
import { CborValue, encodeCbor } from '../../../../lib/shared/cbor';
import { SocketPair, loopbackPair } from './socket-pair';
import { eventually } from './vsock-helpers';

const open: SocketPair[] = [];

afterEach(async () => {
  for (const pair of open.splice(0)) await pair.close();
});

/** Two connected sockets over loopback TCP, closed after the test. */
async function socketPair(): Promise<[Socket, Socket]> {
  const pair = await loopbackPair();
  open.push(pair);
  return [pair.client, pair.peer];
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

/** A control record whose one unknown field's name is `keyChars` of \u0001 (6 characters each once quoted). */
function recordWithLongField(keyChars: number): Buffer {
  const body = encodeCbor(new Map<CborValue, CborValue>([['t', 'open'], ['\u0001'.repeat(keyChars), 1]]));
  const record = Buffer.alloc(4 + body.length);
  record.writeUInt32BE(body.length, 0);
  body.copy(record, 4);
  return record;
}

describe('RecordConnection.fail', () => {
  // The refusal quotes the field; quoted in full it made an error message beyond the control
  // limit, whose encoding threw inside fail(), a voided promise: the process died of it.
  it('refuses a record whose refusal would quote 36 KB, answers a bounded error and closes', async () => {
    const [socket, peer] = await socketPair();
    let closedWith: WireError | undefined;
    new RecordConnection(socket, { ...ignore, onClose: (error) => (closedWith = error) });
    const answers: ControlMessage[] = [];
    new RecordConnection(peer, { ...ignore, onControl: (message) => answers.push(message) });
    peer.write(recordWithLongField(6000));
    await eventually(() => closedWith !== undefined && answers.length === 1, "the refusal and its answer");
    expect(closedWith).toMatchObject({ code: 'MALFORMED' });
    const answer = answers[0] as Extract<ControlMessage, { t: 'error' }>;
    expect(answer).toMatchObject({ t: 'error', code: 'MALFORMED' });
    expect(answer.reason).toMatch(/^unexpected field "(\\u0001){64}" in a 'open' message$/);
  });

  it('cuts an error reason longer than a peer accepts when encoding it, and the peer reads it', () => {
    const record = encodeControl({ t: 'error', code: 'INTERNAL', reason: 'y'.repeat(40_000) });
    const decoded = decodeControl(record) as Extract<ControlMessage, { t: 'error' }>;
    expect(decoded.reason).toBe(`${'y'.repeat(509)}...`);
  });
});
