/**
 * sendOutcome (context/result-sender.ts) when the connection ends half-way through a large
 * answer that the peer was not reading: it returns instead of waiting for a drain that never
 * comes, seals nothing more, and the answer's operation key is zeroised.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { FrameSealer } from '../../src/abe/frame';
import { AbeSession } from '../../src/abe/session';
import { sendOutcome } from '../../src/context/result-sender';
import { RecordConnection } from '../../src/protocol/record-connection';
import { loopbackPair } from '../protocol/socket-pair';

describe('sendOutcome', () => {
  it('returns when the connection ends mid-answer, seals no more, and zeroises the operation key', async () => {
    const { client: ours, peer, close } = await loopbackPair();
    peer.pause(); // the answer is not read
    const connection = new RecordConnection(ours, { onFrame: () => {}, onControl: () => {}, onClose: () => {} });
    const session = new AbeSession(randomBytes(16), randomBytes(32));
    const sealers: FrameSealer[] = [];
    const sealer = session.sealer.bind(session);
    session.sealer = (...args) => sealers[sealers.push(sealer(...args)) - 1];
    const bytes = Buffer.alloc(32 * 1024 * 1024, 7);
    const answering = sendOutcome(connection, session, 1, Buffer.alloc(48), {
      result: { ok: true, size: bytes.length },
      data: { buffer: 1, bytes },
      kernel: 'dtoh',
      codeSha384: Buffer.alloc(48),
      computeUs: 0,
    });
    await new Promise((resolve) => setTimeout(resolve, 200)); // the socket is full: the answer waits for a drain
    connection.close();
    ours.destroy();
    const outcome = await Promise.race([answering.then(() => 'returned'), new Promise((resolve) => setTimeout(() => resolve('still waiting'), 2000))]);
    expect(outcome).toBe('returned');
    expect(sealers).toHaveLength(1);
    expect(sealers[0].complete).toBe(false);
    expect(() => sealers[0].seal(1, Buffer.alloc(1), true)).toThrow(/key is gone/); // aborted: nothing more is sealed
    expect((sealers[0] as unknown as { key: Buffer }).key.equals(Buffer.alloc(32))).toBe(true);
    await close();
  });
});
