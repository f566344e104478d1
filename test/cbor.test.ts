import { describe, expect, it } from 'vitest';
import { CborError, decodeCbor, encodeCbor } from '../lib/shared/cbor';

describe('shared CBOR codec', () => {
  it('round-trips every supported type, with shortest-form heads', () => {
    const value = new Map<any, any>([
      ['bytes', Buffer.from('abc')],
      ['text', 'héllo'],
      [1, [0, 23, 24, 255, 256, 65535, 65536, 2 ** 32, Number.MAX_SAFE_INTEGER, -1, -25, -(2 ** 40)]],
      [-7, [true, false, null, undefined]],
      ['big', 2n ** 64n - 1n],
    ]);
    const decoded = decodeCbor(encodeCbor(value)) as Map<any, any>;
    expect(decoded).toEqual(value);
    expect(encodeCbor(23)).toEqual(Buffer.from([0x17]));
    expect(encodeCbor(24)).toEqual(Buffer.from([0x18, 0x18]));
    expect(encodeCbor(-1)).toEqual(Buffer.from([0x20]));
  });

  it('encodes the RFC 8949 examples', () => {
    expect(encodeCbor([1, [2, 3], [4, 5]]).toString('hex')).toBe('8301820203820405');
    expect(encodeCbor(new Map<any, any>([['a', 1], ['b', [2, 3]]])).toString('hex')).toBe('a26161016162820203');
    expect(encodeCbor(1000000).toString('hex')).toBe('1a000f4240');
  });

  it.each([
    ['a duplicate map key', 'a2616101616102', /duplicate map key/],
    ['a duplicate map key written with a longer head', 'a261610178016102', /duplicate map key/],
    ['a duplicate map key behind a tag', 'a2616101c0616102', /duplicate map key/],
    ['a duplicate integer key in two forms', 'a2010118010102', /duplicate map key/],
    ['a duplicate byte-string key in two forms', 'a241ff015801ff02', /duplicate map key/],
    ['a duplicate array key in two forms', 'a281010198010102', /duplicate map key/],
    ['a text string that is not UTF-8', '62c328', /offset 0 is not valid UTF-8/],
    ['an indefinite-length array', '9f01ff', /indefinite lengths are not accepted/],
    ['a length beyond the data', '5a00010000', /exceeds the \d+ bytes that remain/],
    ['trailing bytes', '0101', /1 bytes follow the CBOR item/],
    ['a truncated head', '19', /truncated/],
    ['a float', 'f93c00', /unsupported simple value or float/],
  ])('refuses %s', (_name, hex, message) => {
    expect(() => decodeCbor(Buffer.from(hex, 'hex'))).toThrow(CborError);
    expect(() => decodeCbor(Buffer.from(hex, 'hex'))).toThrow(message);
  });

  it('keeps a leading byte-order mark: two strings stay two', () => {
    expect(decodeCbor(encodeCbor('\uFEFFabc'))).toBe('\uFEFFabc');
    const map = decodeCbor(encodeCbor(new Map<any, any>([['\uFEFFa', 1], ['a', 2]]))) as Map<unknown, unknown>;
    expect([...map.keys()]).toEqual(['\uFEFFa', 'a']);
  });

  it('keeps keys that differ only in type apart', () => {
    const keys = [1, -2, '1', Buffer.from('1'), [1], 1n << 60n];
    const map = decodeCbor(encodeCbor(new Map<any, any>(keys.map((key) => [key, 0])))) as Map<unknown, unknown>;
    expect([...map.keys()]).toEqual(keys);
  });

  it('refuses nesting deeper than its limit, both ways', () => {
    expect(() => decodeCbor(Buffer.from('81'.repeat(40) + '00', 'hex'))).toThrow(/nested deeper/);
    let deep: any = 0;
    for (let i = 0; i < 40; i++) deep = [deep];
    expect(() => encodeCbor(deep)).toThrow(/nested deeper/);
  });

  it('refuses to encode what CBOR integers cannot hold', () => {
    expect(() => encodeCbor(1.5)).toThrow(/only integers/);
    expect(() => encodeCbor(2n ** 64n)).toThrow(/does not fit/);
  });
});
