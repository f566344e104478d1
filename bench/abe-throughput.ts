/**
 * ABE frame throughput: sealing and opening through the public API (AbeSession, FrameSealer,
 * FrameOpener), so the figure includes K_n derivation, header encoding, frame allocation and
 * parsing, not only AES-GCM.
 */
import { randomBytes } from 'node:crypto';
import { AesGcmBackend } from '../assets/gpu-runtime/src/abe/aes-gcm';
import { LENGTH_PREFIX_BYTES } from '../assets/gpu-runtime/src/abe/frame-codec';
import { ENCLAVE_TO_HOST } from '../assets/gpu-runtime/src/abe/frame-header';
import { MAX_FRAME_BYTES } from '../assets/gpu-runtime/src/abe/limits';
import { AbeSession } from '../assets/gpu-runtime/src/abe/session';
import { RunResult, bestThroughput, secondsSince } from './timing';

/** Chunks per operation: each operation derives its own K_n, as a launch would. */
export const CHUNKS_PER_OPERATION = 64;

export interface ThroughputOptions {
  readonly runs: number;
  /** Timed work per run, at least. */
  readonly secondsPerRun: number;
}

const sessionId = randomBytes(16);
const sessionKey = randomBytes(32);
const digest = randomBytes(48);

/**
 * Best sealing throughput in GB/s of plaintext, `size`-byte chunks: each frame in new
 * memory, or (`reuseFrameBuffer`) written into one buffer reused for every frame, as a
 * sender that recycles its buffers once they are on the wire would.
 */
export function sealThroughput(size: number, backend: AesGcmBackend, options: ThroughputOptions, reuseFrameBuffer: boolean): number {
  const plaintext = randomBytes(size);
  const into = reuseFrameBuffer ? Buffer.alloc(LENGTH_PREFIX_BYTES + MAX_FRAME_BYTES) : undefined;
  return bestThroughput(options.runs, (): RunResult => {
    const session = new AbeSession(sessionId, Buffer.from(sessionKey), backend);
    let bytes = 0;
    let n = 0;
    const start = process.hrtime.bigint();
    while (secondsSince(start) < options.secondsPerRun) {
      const sealer = session.sealer(n++, ENCLAVE_TO_HOST, digest);
      for (let chunk = 1; chunk <= CHUNKS_PER_OPERATION; chunk++) sealer.seal(0, plaintext, chunk === CHUNKS_PER_OPERATION, into);
      bytes += CHUNKS_PER_OPERATION * size;
    }
    return { bytes, seconds: secondsSince(start) };
  });
}

/**
 * Best opening throughput in GB/s of plaintext. Opening decrypts in place, so each pass
 * opens fresh copies of one sealed operation (copied outside the timed part) through a new
 * receiving session, whose replay window has not seen the operation yet.
 */
export function openThroughput(size: number, backend: AesGcmBackend, options: ThroughputOptions): number {
  const sealer = new AbeSession(sessionId, Buffer.from(sessionKey), backend).sealer(1, ENCLAVE_TO_HOST, digest);
  const frames = Array.from({ length: CHUNKS_PER_OPERATION }, (_, i) => sealer.seal(0, randomBytes(size), i === CHUNKS_PER_OPERATION - 1));
  const copies = frames.map((frame) => Buffer.allocUnsafe(frame.length));
  return bestThroughput(options.runs, (): RunResult => {
    let bytes = 0;
    let seconds = 0;
    while (seconds < options.secondsPerRun) {
      frames.forEach((frame, i) => frame.copy(copies[i]));
      const session = new AbeSession(sessionId, Buffer.from(sessionKey), backend);
      const start = process.hrtime.bigint();
      const opener = session.opener(1, ENCLAVE_TO_HOST, digest);
      for (const copy of copies) opener.open(copy);
      seconds += secondsSince(start);
      bytes += CHUNKS_PER_OPERATION * size;
    }
    return { bytes, seconds };
  });
}
