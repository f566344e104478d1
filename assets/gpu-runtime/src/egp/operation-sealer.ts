/**
 * Seals one operation's direction-0 stream: chunk 0 (buffer 0) carries the sealed request
 * descriptor, then, for htod, the data in chunks of at most `chunkBytes`, the last one
 * marked `last` (PROTOCOL.md, "Operations"). An htod of 0 bytes is its descriptor alone.
 *
 * All frames are written into one allocation sized for the whole operation (`allocate`: the
 * client reuses them, as fresh memory costs about as much as sealing it), and each frame is handed to
 * `emit` as soon as it is sealed, so the socket, SGS and the context work on chunk k while
 * chunk k+1 is being sealed. The frames stay valid (views into that allocation) so they can
 * be resent unchanged after BUSY.
 */
import { maxFrameBytes } from '../abe/frame-codec';
import { ENCLAVE_TO_HOST } from '../abe/frame-header';
import { MAX_CHUNK_BYTES } from '../abe/limits';
import { AbeSession } from '../abe/session';
import { DESCRIPTOR_BUFFER, OperationRequest } from '../protocol/op-descriptor';

export interface SealedOperation {
  /** The frames, in order; views into `space`. */
  readonly frames: Buffer[];
  readonly bytes: number;
  /** The allocation the frames were written into (from `allocate`). */
  readonly space: Buffer;
}

/**
 * @param descriptor the request, already encoded (encodeRequest refuses what cannot be sent
 *   before operation n is used)
 */
export function sealOperation(
  session: AbeSession,
  n: number,
  request: OperationRequest,
  descriptor: Buffer,
  digest: Buffer,
  data: Buffer | undefined,
  chunkBytes: number,
  emit: (frame: Buffer) => void,
  allocate: (size: number) => Buffer = Buffer.allocUnsafe,
): SealedOperation {
  const dataBytes = data?.length ?? 0;
  const chunkSize = Math.min(Math.max(1, chunkBytes), MAX_CHUNK_BYTES);
  const dataChunks = Math.ceil(dataBytes / chunkSize);
  const fullChunks = Math.floor(dataBytes / chunkSize);
  const rest = dataBytes - fullChunks * chunkSize;
  const space = allocate(maxFrameBytes(descriptor.length) + fullChunks * maxFrameBytes(chunkSize) + (rest > 0 ? maxFrameBytes(rest) : 0));
  const sealer = session.sealer(n, ENCLAVE_TO_HOST, digest);
  const frames: Buffer[] = [];
  let offset = 0;
  const seal = (buffer: number, plaintext: Buffer, last: boolean) => {
    const frame = sealer.seal(buffer, plaintext, last, space.subarray(offset));
    offset += frame.length;
    frames.push(frame);
    emit(frame);
  };
  seal(DESCRIPTOR_BUFFER, descriptor, dataChunks === 0);
  if (data !== undefined && request.op === 'htod') {
    for (let start = 0; start < dataBytes; start += chunkSize) {
      const end = Math.min(start + chunkSize, dataBytes);
      seal(request.buffer, data.subarray(start, end), end === dataBytes);
    }
  }
  return { frames, bytes: offset, space };
}
