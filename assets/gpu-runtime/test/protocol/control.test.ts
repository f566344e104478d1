import { describe, expect, it } from 'vitest';
import { encodeCbor } from '../../../../lib/shared/cbor';
import { decodeControl, encodeControl } from '../../src/protocol/control';
import { withPrefix } from '../sgs/fuzz-records';

const DIGEST = Buffer.alloc(48, 7);

/** A control record from a raw CBOR map: what a peer could send, valid or not. */
function record(fields: Record<string, unknown>): Buffer {
  return withPrefix(encodeCbor(new Map(Object.entries(fields)) as never));
}

describe('the done message', () => {
  it('carries the device a launch ran on, and none for other operations', () => {
    const launch = { t: 'done', n: 3, kernel: 'onnx.run', codeSha384: DIGEST, computeUs: 1200, device: 'gpu' } as const;
    expect(decodeControl(encodeControl(launch))).toEqual({ ...launch, queueUs: undefined });
    const upload = decodeControl(encodeControl({ t: 'done', n: 2, kernel: 'htod', codeSha384: Buffer.alloc(48), computeUs: 0 }));
    expect(upload).toMatchObject({ t: 'done', n: 2, kernel: 'htod', computeUs: 0 });
    expect((upload as { device?: string }).device).toBeUndefined();
  });

  it.each([['tpu'], [''], [1], [Buffer.from('gpu')]])('refuses device %j as MALFORMED', (device) => {
    expect(() => decodeControl(record({ t: 'done', n: 3, kernel: 'relu', codeSha384: DIGEST, computeUs: 1, device })))
      .toThrow(expect.objectContaining({ code: 'MALFORMED', message: expect.stringContaining("field 'device' must be one of gpu, cpu") }));
  });
});
