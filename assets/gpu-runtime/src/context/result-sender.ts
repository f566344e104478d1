/**
 * Answers operation n (direction 1, PROTOCOL.md "Operations"): the sealed result descriptor
 * as chunk 0, for dtoh the buffer's bytes as further chunks, then the plaintext done message
 * for SGS.
 *
 * Small records are joined, so a small answer (result and done) leaves in one write and
 * reaches SGS as one read. Large frames go out as they are (joining would copy them), and
 * each write waits for the socket to drain when it is full, so a reader that falls behind
 * holds back the context, not its memory.
 */
import { HOST_TO_ENCLAVE, isLaunchDigest } from '../abe/frame-header';
import { sealBuffer } from '../abe/frame';
import { AbeSession } from '../abe/session';
import { encodeControl } from '../protocol/control';
import { DESCRIPTOR_BUFFER, encodeResult } from '../protocol/op-descriptor';
import { RecordConnection } from '../protocol/record-connection';
import { mark } from '../timeline';
import { OperationOutcome } from './operation-executor';

/** Records below this are joined with their neighbours before writing. */
const JOIN_BELOW_BYTES = 64 * 1024;

export async function sendOutcome(connection: RecordConnection, session: AbeSession, n: number, digest: Buffer, outcome: OperationOutcome): Promise<void> {
  const sealer = session.sealer(n, HOST_TO_ENCLAVE, digest);
  const data = outcome.data !== undefined && outcome.data.bytes.length > 0 ? outcome.data : undefined;
  const writer = new JoiningWriter(connection);
  try {
    await writer.add(sealer.seal(DESCRIPTOR_BUFFER, encodeResult(outcome.result), data === undefined));
    if (data !== undefined) {
      for (const frame of sealBuffer(sealer, data.buffer, data.bytes, true)) {
        await writer.add(frame);
        if (connection.isClosed) return; // nobody will read the rest: seal no more of it
      }
    }
  } finally {
    if (!sealer.complete) sealer.abort(); // K_n zeroised when the answer stops half-way (the connection ended, a write failed)
  }
  await writer.add(encodeControl({ t: 'done', n, kernel: outcome.kernel, codeSha384: outcome.codeSha384, computeUs: outcome.computeUs, device: outcome.device }));
  await writer.flush();
  mark('ctx', 'sent', session.sessionId, n); // handed to the socket: before the write that SGS can see
  // A launch's answer leaves now rather than with this turn's other writes: what waits behind
  // it (typically the dtoh of its output) is then opened and sealed here while SGS and the
  // EGP already handle this answer, instead of everything leaving together afterwards.
  if (isLaunchDigest(outcome.codeSha384)) connection.flush();
}

class JoiningWriter {
  private readonly pending: Buffer[] = [];
  private pendingBytes = 0;

  constructor(private readonly connection: RecordConnection) {}

  async add(record: Buffer): Promise<void> {
    if (record.length >= JOIN_BELOW_BYTES) {
      await this.flush();
      await this.write(record);
      return;
    }
    this.pending.push(record);
    this.pendingBytes += record.length;
    if (this.pendingBytes >= JOIN_BELOW_BYTES) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.pending.length === 0) return;
    const joined = this.pending.length === 1 ? this.pending[0] : Buffer.concat(this.pending, this.pendingBytes);
    this.pending.length = 0;
    this.pendingBytes = 0;
    await this.write(joined);
  }

  /** A connection that closed mid-answer rejects writes; the session is over, so there is nothing to report. */
  private write(record: Buffer): Promise<void> {
    return this.connection.isClosed ? Promise.resolve() : this.connection.send(record);
  }
}
