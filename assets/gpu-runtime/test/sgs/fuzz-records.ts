/**
 * fast-check arbitraries for the SGS fuzz test: records an enclave link might carry, from
 * random bytes to real frames and control messages with one thing changed.
 */
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { encodeCbor } from '../../../../lib/shared/cbor';
import { FrameSealer } from '../../src/abe/frame';
import { ControlMessage, encodeControl } from '../../src/protocol/control';
import { OperationRequest } from '../../src/protocol/op-descriptor';
import { WIRE_ERROR_CODES } from '../../src/protocol/wire-error';
import { INCREMENT_DIGEST, INCREMENT_KERNEL, NO_KERNEL } from './fake-context';

/** A change to a record's bytes. */
export type Mutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'set'; at: number; value: number }
  | { kind: 'truncate'; keep: number }
  | { kind: 'append'; bytes: Uint8Array }
  | { kind: 'prefix'; length: number };

export const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('truncate' as const), keep: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('append' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('prefix' as const), length: fc.oneof(fc.nat({ max: 300 }), fc.constant(0xffff_ffff), fc.integer({ min: 1_052_673, max: 0x7fff_ffff })) }) },
);

/** Applies a mutation to a record (length prefix included); the result may be anything. */
export function mutate(record: Buffer, mutation: Mutation): Buffer {
  const bytes = Buffer.from(record);
  switch (mutation.kind) {
    case 'flip': bytes[mutation.at % bytes.length] ^= 1 << mutation.bit; return bytes;
    case 'set': bytes[mutation.at % bytes.length] = mutation.value; return bytes;
    case 'truncate': return bytes.subarray(0, mutation.keep % bytes.length);
    case 'append': return Buffer.concat([bytes, Buffer.from(mutation.bytes)]);
    case 'prefix': bytes.writeUInt32BE(mutation.length >>> 0, 0); return bytes;
  }
}

export function withPrefix(body: Uint8Array): Buffer {
  const record = Buffer.alloc(4 + body.length);
  record.writeUInt32BE(body.length, 0);
  record.set(body, 4);
  return record;
}

const bytesArb = (max: number) => fc.uint8Array({ maxLength: max }).map((b) => Buffer.from(b));

/** Well-formed control messages of every type, with random contents. */
export const controlArb: fc.Arbitrary<ControlMessage> = fc.oneof(
  fc.constant<ControlMessage>({ t: 'open' }),
  fc.constant<ControlMessage>({ t: 'hello-request' }),
  bytesArb(200).filter((b) => b.length > 0).map((hello): ControlMessage => ({ t: 'hello', hello })),
  bytesArb(300).filter((b) => b.length > 0).map((reply): ControlMessage => ({ t: 'reply', reply })),
  fc.uint8Array({ minLength: 16, maxLength: 16 }).map((s): ControlMessage => ({ t: 'ready', session: Buffer.from(s) })),
  fc.record({ n: fc.nat(), computeUs: fc.nat() }).map(({ n, computeUs }): ControlMessage => ({ t: 'done', n, kernel: 'k', codeSha384: Buffer.alloc(48), computeUs })),
  fc.record({ code: fc.constantFrom(...WIRE_ERROR_CODES), n: fc.option(fc.nat(), { nil: undefined }) }).map(({ code, n }): ControlMessage => ({ t: 'error', code, reason: 'fuzz', n })),
);

/** CBOR values of a few levels: what a hostile peer might put in a control map. */
const cborValueArb = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.integer(), fc.string({ maxLength: 20 }), fc.boolean(), fc.constant(null), bytesArb(40),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.array(fc.tuple(fc.oneof(fc.constantFrom('t', 'n', 'code', 'reason', 'hello', 'reply', 'session', 'kernel'), fc.string({ maxLength: 8 })), tie('value')), { maxLength: 5 }).map((entries) => new Map(entries)),
  ),
})).value;

/** A frame sealed under a random key and session (valid layout, meaningless to anyone). */
const strangerFrameArb = fc.record({ n: fc.nat({ max: 1000 }), buffer: fc.nat({ max: 8 }), last: fc.boolean(), dir: fc.constantFrom(0 as const, 1 as const), size: fc.nat({ max: 200 }) })
  .map(({ n, buffer, last, dir, size }) => new FrameSealer({ key: randomBytes(32), session: randomBytes(16), n, dir, digest: NO_KERNEL }).seal(buffer, randomBytes(size), last));

/** One record (or raw stream bytes) for a connection that has not set up a session. */
export const looseRecordArb: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 3, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 64 }).map((b) => Buffer.from(b)) },
  { weight: 3, arbitrary: fc.uint8Array({ maxLength: 64 }).map(withPrefix) },
  { weight: 3, arbitrary: cborValueArb.map((v) => withPrefix(encodeCbor(v as never))) },
  { weight: 2, arbitrary: controlArb.map(encodeControl) },
  { weight: 4, arbitrary: fc.tuple(controlArb, mutationArb).map(([message, m]) => mutate(encodeControl(message), m)) },
  { weight: 2, arbitrary: strangerFrameArb },
  { weight: 4, arbitrary: fc.tuple(strangerFrameArb, mutationArb).map(([frame, m]) => mutate(frame, m)) },
);

/** An operation request the fake context understands (or refuses politely). */
export const requestArb: fc.Arbitrary<{ request: OperationRequest; data?: Buffer; digest: Buffer }> = fc.oneof(
  fc.record({ buffer: fc.integer({ min: 1, max: 4 }), size: fc.nat({ max: 4096 }) }).map(({ buffer, size }) => ({ request: { op: 'malloc' as const, buffer, size }, digest: NO_KERNEL })),
  fc.integer({ min: 1, max: 4 }).map((buffer) => ({ request: { op: 'free' as const, buffer }, digest: NO_KERNEL })),
  fc.tuple(fc.integer({ min: 1, max: 4 }), bytesArb(3000)).map(([buffer, data]) => ({ request: { op: 'htod' as const, buffer, size: data.length }, data, digest: NO_KERNEL })),
  fc.integer({ min: 1, max: 4 }).map((buffer) => ({ request: { op: 'dtoh' as const, buffer }, digest: NO_KERNEL })),
  fc.integer({ min: 1, max: 4 }).map((buffer) => ({ request: { op: 'launch' as const, kernel: INCREMENT_KERNEL, args: new Map([['buffer', buffer]]) }, digest: INCREMENT_DIGEST })),
);

/** One step of a ready session: mostly real operations, sometimes one with a record changed. */
export type SessionStep =
  | { kind: 'operation'; operation: { request: OperationRequest; data?: Buffer; digest: Buffer } }
  | { kind: 'mutated'; operation: { request: OperationRequest; data?: Buffer; digest: Buffer }; mutation: Mutation; frame: number }
  | { kind: 'replay'; index: number }
  | { kind: 'control'; record: Buffer }
  | { kind: 'skip'; by: number };

export const sessionStepArb: fc.Arbitrary<SessionStep> = fc.oneof(
  // Most steps are real operations, so a session lives long enough to carry many records (most
  // changed records end it, and a session costs a handshake); the frame-level fuzz below the
  // socket (sgs-fuzz.test.ts, "the inbound path") mutates every frame.
  { weight: 190, arbitrary: requestArb.map((operation): SessionStep => ({ kind: 'operation', operation })) },
  { weight: 5, arbitrary: fc.record({ operation: requestArb, mutation: mutationArb, frame: fc.nat() }).map((s): SessionStep => ({ kind: 'mutated', ...s })) },
  { weight: 1, arbitrary: fc.nat().map((index): SessionStep => ({ kind: 'replay', index })) },
  { weight: 2, arbitrary: looseRecordArb.map((record): SessionStep => ({ kind: 'control', record })) },
  { weight: 2, arbitrary: fc.integer({ min: 1, max: 5 }).map((by): SessionStep => ({ kind: 'skip', by })) },
);
