/**
 * Memory for large received frames, reused. A frame that spans several socket reads has to
 * be assembled somewhere; a fresh 600 KB allocation is about 150 fresh pages, each faulted
 * in on first write, which on these machines costs 10 to 20 times the copy itself, on every
 * frame at every hop. Frames of LARGE_FRAME_BYTES and more are therefore assembled in memory
 * taken from here, and the one holder of a frame gives it back (releaseFrame) once nothing
 * reads it any more: SGS once its write to the next hop completed, the context once the
 * frame was opened and its plaintext copied and wiped. A frame never given back is simply
 * collected; giving one back while something still reads it would hand its bytes to the
 * next frame, so each holder releases at exactly one point, or not at all.
 */

import { BufferPool } from '../buffer-pool';

/** Frames below this are assembled in ordinary memory (Node's allocation pool serves them well). */
export const LARGE_FRAME_BYTES = 64 * 1024;

/** Frames of similar size share memory (capacity classes of 64 KiB); at most 32 MiB kept free per process. */
const framePool = new BufferPool({ maxBytes: 32 * 1024 * 1024, minBytes: LARGE_FRAME_BYTES, classBytes: 64 * 1024 });

/** A buffer of exactly `size` bytes for a frame; pooled memory from LARGE_FRAME_BYTES up. */
export function allocateFrame(size: number): Buffer {
  return framePool.acquire(size);
}

/**
 * Gives a frame from allocateFrame back; anything else (a small frame, a view of a socket
 * read, a frame already given back) is ignored.
 */
export function releaseFrame(frame: Buffer): void {
  framePool.release(frame);
}
