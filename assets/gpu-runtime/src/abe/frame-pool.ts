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

/** Frames below this are assembled in ordinary memory (Node's allocation pool serves them well). */
export const LARGE_FRAME_BYTES = 64 * 1024;
/** Capacity granularity: frames of similar size share a class. */
const CLASS_BYTES = 64 * 1024;
/** The most bytes kept free for reuse, per process. */
const MAX_FREE_BYTES = 32 * 1024 * 1024;

/** Pool memory handed out and not given back. */
const issued = new WeakSet<ArrayBuffer>();
const free = new Map<number, ArrayBuffer[]>();
let freeBytes = 0;

/** A buffer of exactly `size` bytes for a frame; pooled memory from LARGE_FRAME_BYTES up. */
export function allocateFrame(size: number): Buffer {
  if (size < LARGE_FRAME_BYTES) return Buffer.allocUnsafe(size);
  const capacity = Math.ceil(size / CLASS_BYTES) * CLASS_BYTES;
  const list = free.get(capacity);
  let memory = list?.pop();
  if (memory !== undefined) {
    freeBytes -= capacity;
  } else {
    memory = new ArrayBuffer(capacity);
  }
  issued.add(memory);
  return Buffer.from(memory, 0, size);
}

/**
 * Gives a frame from allocateFrame back; anything else (a small frame, a view of a socket
 * read, a frame already given back) is ignored.
 */
export function releaseFrame(frame: Buffer): void {
  const memory = frame.buffer;
  if (!(memory instanceof ArrayBuffer) || frame.byteOffset !== 0 || !issued.has(memory)) return;
  issued.delete(memory);
  const capacity = memory.byteLength;
  if (freeBytes + capacity > MAX_FREE_BYTES) return;
  let list = free.get(capacity);
  if (list === undefined) free.set(capacity, (list = []));
  list.push(memory);
  freeBytes += capacity;
}
