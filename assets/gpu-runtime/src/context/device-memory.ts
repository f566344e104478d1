/**
 * One session's device buffers: ids chosen by the enclave, bytes held here, their total
 * bounded by the session's cap and their number by MAX_BUFFERS. In local mode "device"
 * memory is host memory; each buffer has its own zero-offset ArrayBuffer, so f32 views of
 * it are always aligned.
 *
 * A buffer's SHA-384 (the digest onnx.run launches are checked against) is computed once
 * and kept until the buffer is written again: hashing a 100 MB model on every launch would
 * cost more than running it.
 *
 * When the session ends, clear() zeroises every buffer: they held the enclave's plaintext.
 */
import { createHash } from 'node:crypto';
import type { KernelMemory } from '../kernels/kernel';
import { OperationError } from '../kernels/operation-error';
import { MAX_BUFFER_BYTES } from '../protocol/op-descriptor';

/** Most buffers one session may hold at once (so zero-byte mallocs cannot grow the map without bound). */
export const MAX_BUFFERS = 4096;

interface DeviceBuffer {
  bytes: Buffer;
  digest?: Buffer;
}

export class DeviceMemory implements KernelMemory {
  private readonly buffers = new Map<number, DeviceBuffer>();
  private used = 0;
  private cleared = false;

  /** @param cap the most bytes this session's buffers may hold together */
  constructor(readonly cap: number) {
    if (!Number.isSafeInteger(cap) || cap < 0) throw new RangeError(`a memory cap is a byte count, got ${cap}`);
  }

  get usedBytes(): number {
    return this.used;
  }

  get bufferCount(): number {
    return this.buffers.size;
  }

  /** A new buffer of `size` zero bytes. */
  allocate(id: number, size: number): void {
    this.ensureOpen();
    if (this.buffers.has(id)) throw new OperationError('BUFFER_EXISTS', `buffer ${id} is already allocated`);
    if (this.buffers.size >= MAX_BUFFERS) throw new OperationError('OUT_OF_MEMORY', `the session already holds ${MAX_BUFFERS} buffers`);
    this.buffers.set(id, { bytes: this.reserve(size, 0) });
  }

  /** Zeroises and frees buffer `id`. */
  free(id: number): void {
    const buffer = this.entry(id);
    buffer.bytes.fill(0);
    this.used -= buffer.bytes.length;
    this.buffers.delete(id);
  }

  read(id: number): Buffer {
    return this.entry(id).bytes;
  }

  write(id: number): Buffer {
    const buffer = this.entry(id);
    buffer.digest = undefined;
    return buffer.bytes;
  }

  resize(id: number, size: number): Buffer {
    const buffer = this.entry(id);
    const bytes = this.reserve(size, buffer.bytes.length);
    buffer.bytes.fill(0);
    this.used -= buffer.bytes.length;
    buffer.bytes = bytes;
    buffer.digest = undefined;
    return bytes;
  }

  digest(id: number): Buffer {
    const buffer = this.entry(id);
    buffer.digest ??= createHash('sha384').update(buffer.bytes).digest();
    return Buffer.from(buffer.digest);
  }

  /** Zeroises and drops every buffer; the memory refuses everything afterwards. */
  clear(): void {
    this.cleared = true;
    for (const buffer of this.buffers.values()) buffer.bytes.fill(0);
    this.buffers.clear();
    this.used = 0;
  }

  /** New zeroed bytes for a buffer, counted against the cap as if `releasing` bytes were freed first. */
  private reserve(size: number, releasing: number): Buffer {
    if (!Number.isSafeInteger(size) || size < 0 || size > MAX_BUFFER_BYTES) {
      throw new OperationError('OUT_OF_MEMORY', `a buffer of ${size} bytes exceeds the ${MAX_BUFFER_BYTES}-byte limit`);
    }
    if (this.used - releasing + size > this.cap) {
      throw new OperationError('OUT_OF_MEMORY', `${size} bytes would take the session to ${this.used - releasing + size} bytes, over its cap of ${this.cap}`);
    }
    let bytes: Buffer;
    try {
      bytes = Buffer.from(new ArrayBuffer(size));
    } catch {
      throw new OperationError('OUT_OF_MEMORY', `the host cannot allocate ${size} bytes`);
    }
    this.used += size;
    return bytes;
  }

  private entry(id: number): DeviceBuffer {
    this.ensureOpen();
    const buffer = this.buffers.get(id);
    if (!buffer) throw new OperationError('NO_SUCH_BUFFER', `buffer ${id} is not allocated`);
    return buffer;
  }

  private ensureOpen(): void {
    if (this.cleared) throw new OperationError('NO_SUCH_BUFFER', 'the session has ended; its buffers are gone');
  }
}
