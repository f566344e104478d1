/**
 * What the context fuzz test throws: fast-check arbitraries for sealed operations (requests
 * well formed and not, kernel arguments right and wrong, htod data that fits and does not)
 * and for raw records (random bytes, random and mutated control messages, frame-shaped
 * garbage, hostile length prefixes).
 */
import fc from 'fast-check';
import { CborValue, encodeCbor } from '../../../../lib/shared/cbor';
import { MAX_FRAME_BYTES } from '../../src/abe/limits';
import { encodeControl } from '../../src/protocol/control';
import { encodeRequest } from '../../src/protocol/op-descriptor';

/** One sealed operation to send: its descriptor bytes, which digest to label it with, and its data chunks. */
export interface FuzzOperation {
  readonly descriptor: Buffer;
  readonly digest: 'right' | 'zero' | 'random' | 'other';
  readonly kernel?: string;
  /** Data chunks after the descriptor: the buffer id each names, and its bytes. */
  readonly chunks: readonly { readonly buffer: number; readonly bytes: Buffer }[];
}

const ARG_NAMES = ['a', 'b', 'c', 'out', 'input', 'count', 'rows', 'cols', 'm', 'n', 'k', 'model', 'inputNames', 'inputBuffers', 'inputShapes', 'outputNames', 'outputBuffers'];
const KERNELS = ['add', 'relu', 'softmax', 'gemm', 'onnx.run'];

/** CBOR values the shared encoder can write (integers, not floats), nested a little. */
export const cborValue: fc.Arbitrary<CborValue> = fc.letrec<{ value: CborValue }>((tie) => ({
  value: fc.oneof(
    { maxDepth: 3, depthSize: 'small' },
    fc.integer(),
    fc.constantFrom(0, 1, 7, 255, 2 ** 31, 2 ** 32, 2 ** 53 - 1, -1, -(2 ** 53 - 1)),
    fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
    fc.string({ maxLength: 12 }),
    fc.uint8Array({ maxLength: 24 }).map((bytes) => Buffer.from(bytes)),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.array(fc.tuple(fc.oneof(fc.constantFrom(...ARG_NAMES, 'op', 'buffer', 'size', 'kernel', 'args', 't'), fc.string({ maxLength: 6 }), fc.nat(9)), tie('value')), { maxLength: 4 })
      .map((entries) => new Map<CborValue, CborValue>(entries)),
  ),
})).value;

/** A byte-level change: a bit flipped, bytes cut or appended, a byte overwritten. */
export const mutation: fc.Arbitrary<(bytes: Buffer) => Buffer> = fc.oneof(
  fc.tuple(fc.nat(), fc.integer({ min: 0, max: 7 })).map(([at, bit]) => (bytes: Buffer) => {
    const copy = Buffer.from(bytes);
    if (copy.length > 0) copy[at % copy.length] ^= 1 << bit;
    return copy;
  }),
  fc.nat().map((at) => (bytes: Buffer) => bytes.subarray(0, bytes.length === 0 ? 0 : at % bytes.length)),
  fc.uint8Array({ minLength: 1, maxLength: 8 }).map((tail) => (bytes: Buffer) => Buffer.concat([bytes, tail])),
  fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })).map(([at, value]) => (bytes: Buffer) => {
    const copy = Buffer.from(bytes);
    if (copy.length > 0) copy[at % copy.length] = value;
    return copy;
  }),
);

/** `arbitrary`'s value one time in eight, else null. */
function rarely<T>(arbitrary: fc.Arbitrary<T>): fc.Arbitrary<T | null> {
  return fc.oneof({ weight: 7, arbitrary: fc.constant(null) }, { weight: 1, arbitrary });
}

/** Mostly the f32 buffers the test session sets up (1-4), sometimes others, rarely invalid ids. */
const id = fc.oneof(
  { weight: 16, arbitrary: fc.integer({ min: 1, max: 4 }) },
  { weight: 3, arbitrary: fc.integer({ min: 5, max: 9 }) },
  { weight: 1, arbitrary: fc.constantFrom(0, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, -3) },
);
const small = fc.oneof({ weight: 12, arbitrary: fc.nat(12) }, { weight: 1, arbitrary: fc.constantFrom(2 ** 29, 2 ** 31, 2 ** 53 - 1, -1) });
const names = fc.array(fc.oneof(fc.constantFrom('x', 'z', 'r', 'y'), fc.string({ maxLength: 4 })), { minLength: 0, maxLength: 3 });
const shapes = fc.array(fc.array(small, { maxLength: 3 }), { minLength: 0, maxLength: 2 });

/** Arguments close to right for each kernel, then perhaps one dropped, one added, one replaced. */
const launchArgs = fc.constantFrom(...KERNELS).chain((kernel) => {
  const base: Record<string, fc.Arbitrary<CborValue>> = kernel === 'add' ? { a: id, b: id, out: id, count: small }
    : kernel === 'relu' ? { input: id, out: id, count: small }
    : kernel === 'softmax' ? { input: id, out: id, rows: small, cols: small }
    : kernel === 'gemm' ? { a: id, b: id, c: id, m: small, n: small, k: small }
    : {
      model: fc.oneof({ weight: 4, arbitrary: fc.constant(5) }, { weight: 1, arbitrary: id }),
      inputNames: fc.oneof({ weight: 4, arbitrary: fc.constant<CborValue>(['x']) }, { weight: 1, arbitrary: names }),
      inputBuffers: fc.oneof({ weight: 4, arbitrary: fc.constant<CborValue>([2]) }, { weight: 1, arbitrary: fc.array(id, { maxLength: 2 }) }),
      inputShapes: fc.oneof({ weight: 4, arbitrary: fc.constantFrom<CborValue[]>([[1, 8]], [[2, 8]], [[8, 8]]) }, { weight: 1, arbitrary: shapes }),
      outputs: fc.oneof(
        { weight: 4, arbitrary: fc.constantFrom<[CborValue, CborValue]>([['z'], [6]], [['z', 'r'], [6, 7]], [['r'], [7]]) },
        { weight: 1, arbitrary: fc.tuple(names, fc.array(id, { maxLength: 2 })) },
      ),
    };
  return fc.tuple(fc.record(base), rarely(fc.constantFrom(...Object.keys(base))), rarely(fc.tuple(fc.constantFrom(...ARG_NAMES, 'alpha'), cborValue)))
    .map(([args, drop, extra]) => {
      const map = new Map<string, CborValue>(Object.entries(args));
      const outputs = map.get('outputs') as [CborValue, CborValue] | undefined;
      if (outputs !== undefined) {
        map.delete('outputs');
        map.set('outputNames', outputs[0]);
        map.set('outputBuffers', outputs[1]);
      }
      if (drop !== null) map.delete(drop);
      if (extra !== null) map.set(extra[0], extra[1]);
      return { kernel, args: map };
    });
});

const digest = fc.constantFrom<FuzzOperation['digest']>('right', 'right', 'right', 'zero', 'random', 'other');

const launch: fc.Arbitrary<FuzzOperation> = fc.tuple(launchArgs, digest, rarely(fc.string({ minLength: 1, maxLength: 8 })))
  .map(([{ kernel, args }, label, otherName]) => {
    const name = otherName ?? kernel;
    return { descriptor: encodeRequest({ op: 'launch', kernel: name, args }), digest: label, kernel: name, chunks: [] };
  });

/** Mostly on buffers 8-14, so the ones random launches use (1-7) stay in place most of the time. */
const memoryOp: fc.Arbitrary<FuzzOperation> = fc.tuple(fc.constantFrom('malloc', 'free', 'dtoh'), fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 8, max: 14 }) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 7 }) }), fc.oneof(fc.nat(4096), fc.constantFrom(2 ** 31, 2 ** 31 + 1)), fc.constantFrom<FuzzOperation['digest']>('zero', 'zero', 'zero', 'random'))
  .map(([op, buffer, size, label]) => ({
    descriptor: encodeRequest(op === 'malloc' ? { op, buffer, size } : { op: op as 'free' | 'dtoh', buffer }),
    digest: label,
    chunks: [],
  }));

/** htod whose data fits exactly, falls short, runs over, or names another buffer. */
const htod: fc.Arbitrary<FuzzOperation> = fc.tuple(fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 1, max: 4 }) }, { weight: 1, arbitrary: fc.integer({ min: 5, max: 14 }) }), fc.oneof({ weight: 3, arbitrary: fc.nat(256) }, { weight: 1, arbitrary: fc.nat(600) }), fc.integer({ min: -8, max: 8 }), fc.nat(3), rarely(fc.integer({ min: 1, max: 9 })), fc.constantFrom<FuzzOperation['digest']>('zero', 'zero', 'zero', 'random'))
  .map(([buffer, size, skew, pieces, otherBuffer, label]) => {
    const total = Math.max(0, size + (skew % 3 === 0 ? skew : 0));
    const bytes = Buffer.alloc(total, 0x3c);
    const cut = pieces === 0 ? [bytes] : Array.from({ length: pieces + 1 }, (_, i) => bytes.subarray(Math.floor((i * total) / (pieces + 1)), Math.floor(((i + 1) * total) / (pieces + 1))));
    return {
      descriptor: encodeRequest({ op: 'htod', buffer, size }),
      digest: label,
      chunks: cut.map((piece, i) => ({ buffer: i === cut.length - 1 && otherBuffer !== null ? otherBuffer : buffer, bytes: piece })),
    };
  });

/** Descriptors that are not requests: any CBOR, any bytes, a valid request's bytes mutated. */
const garbage: fc.Arbitrary<FuzzOperation> = fc.oneof(
  cborValue.map((value) => encodeCbor(value)),
  fc.uint8Array({ maxLength: 64 }).map((bytes) => Buffer.from(bytes)),
  fc.tuple(fc.constantFrom(
    encodeRequest({ op: 'malloc', buffer: 3, size: 16 }),
    encodeRequest({ op: 'launch', kernel: 'relu', args: new Map<string, CborValue>([['input', 1], ['out', 2], ['count', 4]]) }),
    encodeRequest({ op: 'htod', buffer: 1, size: 0 }),
  ), mutation).map(([bytes, mutate]) => mutate(bytes)),
).chain((descriptor) => fc.tuple(digest, fc.array(fc.uint8Array({ maxLength: 32 }), { maxLength: 2 }))
  .map(([label, data]) => ({ descriptor, digest: label, chunks: data.map((bytes) => ({ buffer: 1, bytes: Buffer.from(bytes) })) })));

export const fuzzOperation: fc.Arbitrary<FuzzOperation> = fc.oneof(
  { weight: 5, arbitrary: launch },
  { weight: 2, arbitrary: memoryOp },
  { weight: 2, arbitrary: htod },
  { weight: 2, arbitrary: garbage },
);

function prefixed(body: Uint8Array): Buffer {
  const record = Buffer.alloc(4 + body.length);
  record.writeUInt32BE(body.length, 0);
  record.set(body, 4);
  return record;
}

const VALID_CONTROLS = [
  encodeControl({ t: 'hello-request' }),
  encodeControl({ t: 'open' }),
  encodeControl({ t: 'reply', reply: Buffer.alloc(200, 7) }),
  encodeControl({ t: 'ready', session: Buffer.alloc(16, 1) }),
  encodeControl({ t: 'done', n: 1, kernel: 'relu', codeSha384: Buffer.alloc(48), computeUs: 3 }),
  encodeControl({ t: 'error', code: 'TIMEOUT', reason: 'x' }),
];

/** One raw record (or raw bytes) for a connection that has no session yet. */
export const rawRecord: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 48 }).map((bytes) => Buffer.from(bytes)) },
  { weight: 3, arbitrary: fc.uint8Array({ maxLength: 300 }).map(prefixed) },
  { weight: 3, arbitrary: cborValue.map((value) => prefixed(encodeCbor(value))) },
  {
    weight: 3,
    arbitrary: fc.tuple(fc.constantFrom('open', 'hello-request', 'hello', 'reply', 'ready', 'done', 'error', 'x'), fc.array(fc.tuple(fc.constantFrom('hello', 'reply', 'session', 'n', 'kernel', 'codeSha384', 'computeUs', 'code', 'reason', 'retryAfterMs', 'extra'), cborValue), { maxLength: 4 }))
      .map(([t, fields]) => prefixed(encodeCbor(new Map<CborValue, CborValue>([['t', t], ...fields])))),
  },
  { weight: 3, arbitrary: fc.tuple(fc.constantFrom(...VALID_CONTROLS), mutation).map(([record, mutate]) => mutate(record)) },
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 200 }).map((bytes) => prefixed(Buffer.concat([Buffer.of(0x83), bytes]))) },
  { weight: 1, arbitrary: fc.integer({ min: MAX_FRAME_BYTES + 1, max: 2 ** 32 - 1 }).map((length) => { const b = Buffer.alloc(4); b.writeUInt32BE(length, 0); return b; }) },
  { weight: 1, arbitrary: fc.constantFrom(...VALID_CONTROLS) },
);

/** How an established session is attacked once: each must end it with a typed error or a clean close. */
export type SessionAttack =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'truncate'; keep: number }
  | { kind: 'replay' }
  | { kind: 'reorder' }
  | { kind: 'wrong-direction' }
  | { kind: 'raw'; record: Buffer }
  | { kind: 'control'; record: Buffer };

export const sessionAttack: fc.Arbitrary<SessionAttack> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('truncate' as const), keep: fc.nat() }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'replay' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'reorder' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'wrong-direction' as const }) },
  { weight: 2, arbitrary: rawRecord.map((record) => ({ kind: 'raw' as const, record })) },
  { weight: 1, arbitrary: fc.constantFrom(...VALID_CONTROLS).map((record) => ({ kind: 'control' as const, record })) },
);
