/**
 * Replayed frames are refused: an enclave-side peer speaking the wire protocol by hand (the
 * EGP's own sealing, no client logic) sends an operation, gets its answer, then sends the very
 * same frames again; or sends a frame recorded in one session into another. Each is refused
 * with a typed error and ends the session; the device state of the first run is untouched.
 */
import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { answerHello } from '../../src/abe/handshake';
import { decodeContextHello, encodeEnclaveReply } from '../../src/abe/handshake-messages';
import { AbeSession } from '../../src/abe/session';
import { ZERO_DIGEST } from '../../src/abe/frame-header';
import type { LocalStack } from '../../src/egp/local-stack';
import { sealOperation } from '../../src/egp/operation-sealer';
import { ControlMessage } from '../../src/protocol/control';
import { OperationRequest, encodeRequest } from '../../src/protocol/op-descriptor';
import { RecordConnection } from '../../src/protocol/record-connection';
import { connect, parseAddress } from '../../src/protocol/transport';
import { WireError } from '../../src/protocol/wire-error';
import { useLocalStack } from './helpers';

/** A hand-driven enclave end: records as they arrive, and the ABE session after the handshake. */
class RawPeer {
  static async open(stack: LocalStack): Promise<RawPeer> {
    const peer = new RawPeer(await connect(parseAddress(stack.sgsAddress)));
    peer.connection.sendControl({ t: 'open' });
    const hello = await peer.next('hello');
    const { reply, session } = await answerHello(decodeContextHello((hello as { hello: Buffer }).hello), stack.enclave);
    peer.session = session;
    peer.connection.sendControl({ t: 'reply', reply: encodeEnclaveReply(reply) });
    await peer.next('ready');
    return peer;
  }

  readonly connection: RecordConnection;
  session!: AbeSession;
  closedWith?: WireError | 'clean';
  private readonly records: Array<{ frame: Buffer } | { control: ControlMessage }> = [];
  private wake?: () => void;

  private constructor(socket: Socket) {
    this.connection = new RecordConnection(socket, {
      onFrame: (frame) => this.push({ frame }),
      onControl: (control) => this.push({ control }),
      onClose: (error) => { this.closedWith = error ?? 'clean'; this.wake?.(); },
    });
  }

  /** Seals operation n and writes its frames; returns them (to replay). */
  send(n: number, request: OperationRequest): Buffer[] {
    const sealed = sealOperation(this.session, n, request, encodeRequest(request), ZERO_DIGEST, undefined, 1 << 20, (frame) => void this.connection.send(frame).catch(() => undefined));
    return sealed.frames.map((frame) => Buffer.from(frame));
  }

  /** Waits for the next control message of type `t` (frames before it are skipped). */
  async next(t: ControlMessage['t']): Promise<ControlMessage> {
    for (;;) {
      const record = this.records.shift();
      if (record && 'control' in record && record.control.t === t) return record.control;
      if (record) continue;
      if (this.closedWith) throw new Error(`closed (${this.closedWith === 'clean' ? 'clean' : this.closedWith.code}) before a '${t}'`);
      await new Promise<void>((resolve) => { this.wake = resolve; });
    }
  }

  /** Resolves once the connection is closed. */
  async closed(): Promise<void> {
    while (!this.closedWith) await new Promise<void>((resolve) => { this.wake = resolve; });
  }

  private push(record: { frame: Buffer } | { control: ControlMessage }): void {
    this.records.push(record);
    this.wake?.();
  }
}

describe('replayed frames', () => {
  const stack = useLocalStack();

  it('refuses an operation sent again in its session (REPLAY) and ends the session', async () => {
    const peer = await RawPeer.open(stack());
    const frames = peer.send(1, { op: 'malloc', buffer: 1, size: 16 });
    expect(await peer.next('done')).toMatchObject({ t: 'done', n: 1, kernel: 'malloc' });
    for (const frame of frames) await peer.connection.send(frame);
    expect(await peer.next('error')).toMatchObject({ t: 'error', code: 'REPLAY', n: 1 });
    await peer.closed();
  });

  it('refuses an older operation after a newer one (REPLAY)', async () => {
    const peer = await RawPeer.open(stack());
    const first = peer.send(1, { op: 'malloc', buffer: 1, size: 16 });
    await peer.next('done');
    peer.send(2, { op: 'malloc', buffer: 2, size: 16 });
    await peer.next('done');
    for (const frame of first) await peer.connection.send(frame);
    expect(await peer.next('error')).toMatchObject({ code: 'REPLAY' });
    await peer.closed();
  });

  it('refuses a frame recorded in another session and ends that session', async () => {
    const victim = await RawPeer.open(stack());
    const recorded = victim.send(1, { op: 'malloc', buffer: 7, size: 16 });
    await victim.next('done');
    const attacker = await RawPeer.open(stack());
    for (const frame of recorded) await attacker.connection.send(frame);
    expect(await attacker.next('error')).toMatchObject({ t: 'error', code: 'MALFORMED' });
    await attacker.closed();
    // The victim's session is untouched: its next operation runs.
    victim.send(2, { op: 'free', buffer: 7 });
    expect(await victim.next('done')).toMatchObject({ n: 2, kernel: 'free' });
    victim.connection.close();
  });
});
