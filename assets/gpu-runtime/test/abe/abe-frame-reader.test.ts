import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { FrameReader } from '../../src/abe/frame-reader';
import { MAX_FRAME_BYTES } from '../../src/abe/limits';
import { refusal, sealerAndOpener } from './helpers';

function someFrames(): Buffer[] {
  const { sealer } = sealerAndOpener();
  return [sealer.seal(0, randomBytes(10), false), sealer.seal(0, randomBytes(70_000), false), sealer.seal(1, Buffer.alloc(0), true)];
}

describe('FrameReader', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('returns the frames of a stream however it is split', () => {
    const frames = someFrames();
    const stream = Buffer.concat(frames);
    for (const pieceSize of [1, 3, 4, 5, 1000, stream.length]) {
      const reader = new FrameReader();
      const out: Buffer[] = [];
      for (let offset = 0; offset < stream.length; offset += pieceSize) out.push(...reader.push(stream.subarray(offset, offset + pieceSize)));
      reader.end();
      expect(out.map((f) => f.toString('hex')), `pieces of ${pieceSize}`).toEqual(frames.map((f) => f.toString('hex')));
    }
  });

  it('and the frames open in order', () => {
    const { sealer, opener } = sealerAndOpener();
    const plaintexts = [randomBytes(5), randomBytes(50_000)];
    const reader = new FrameReader();
    const frames = reader.push(Buffer.concat([sealer.seal(0, plaintexts[0], false), sealer.seal(0, plaintexts[1], true)]));
    expect(frames.map((frame) => opener.open(frame).plaintext.toString('hex'))).toEqual(plaintexts.map((p) => p.toString('hex')));
  });

  it('refuses an oversized length prefix before allocating anything for it', () => {
    const allocations: number[] = [];
    for (const name of ['alloc', 'allocUnsafe', 'allocUnsafeSlow'] as const) {
      const original = Buffer[name];
      vi.spyOn(Buffer, name).mockImplementation(((size: number, ...rest: never[]) => {
        allocations.push(size);
        return (original as (...args: unknown[]) => Buffer).call(Buffer, size, ...rest);
      }) as never);
    }
    const reader = new FrameReader();
    expect(refusal(() => reader.push(Buffer.of(0xff, 0xff, 0xff, 0xff, 0x83)), 'TOO_LARGE')).toMatch(/4294967295 bytes exceeds/);
    expect(allocations.filter((size) => size > 64)).toEqual([]);
    const justOver = Buffer.alloc(4);
    justOver.writeUInt32BE(MAX_FRAME_BYTES + 1);
    refusal(() => new FrameReader().push(justOver), 'TOO_LARGE');
  });

  it('a stream that ends inside a frame: TRUNCATED', () => {
    const [frame] = someFrames();
    const reader = new FrameReader();
    expect(reader.push(frame.subarray(0, frame.length - 1))).toEqual([]);
    refusal(() => reader.end(), 'TRUNCATED');
    const inPrefix = new FrameReader();
    inPrefix.push(frame.subarray(0, 2));
    refusal(() => inPrefix.end(), 'TRUNCATED');
  });

  it('reads nothing more after a refusal', () => {
    const reader = new FrameReader();
    refusal(() => reader.push(Buffer.of(0xff, 0xff, 0xff, 0xff)), 'TOO_LARGE');
    refusal(() => reader.push(someFrames()[0]), 'CLOSED');
  });
});
