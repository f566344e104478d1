/**
 * Shared by the ABE tests: an assertion for typed refusals, and ready-made operation
 * parameters so each test states only what it is about.
 */
import { randomBytes } from 'node:crypto';
import { expect } from 'vitest';
import { encodeCbor } from '../../../../lib/shared/cbor';
import { AbeErrorCode } from '../../src/abe/errors';
import { Direction, ENCLAVE_TO_HOST, FrameHeader } from '../../src/abe/frame-header';
import { FrameOpener, FrameSealer } from '../../src/abe/frame';
import { ReplayWindow } from '../../src/abe/replay-window';
import { refusal as sharedRefusal } from '../refusal';

/** Runs `action` and checks it throws an AbeError with `code`; returns the reason. */
export function refusal(action: () => unknown, code: AbeErrorCode): string {
  const error = sharedRefusal(action);
  expect(error).toMatchObject({ name: 'AbeError', code });
  return error.reason;
}

/** The async counterpart of refusal(). */
export async function asyncRefusal(action: () => Promise<unknown>, code: string, name = 'AbeError'): Promise<string> {
  try {
    await action();
  } catch (error) {
    expect(error).toMatchObject({ name, code });
    return (error as { reason: string }).reason;
  }
  throw new Error(`expected ${code}, but nothing was thrown`);
}

export interface TestOperation {
  readonly key: Buffer;
  readonly session: Buffer;
  readonly n: number;
  readonly dir: Direction;
  readonly digest: Buffer;
}

/** Random parameters of one operation. */
export function testOperation(overrides: Partial<TestOperation> = {}): TestOperation {
  return { key: randomBytes(32), session: randomBytes(16), n: 1, dir: ENCLAVE_TO_HOST, digest: randomBytes(48), ...overrides };
}

/** A sealer and an opener for the same operation, each with its own copy of K_n. */
export function sealerAndOpener(op: TestOperation = testOperation(), window = new ReplayWindow()): { sealer: FrameSealer; opener: FrameOpener; window: ReplayWindow } {
  const sealer = new FrameSealer({ ...op, key: Buffer.from(op.key) });
  const opener = new FrameOpener({ ...op, key: Buffer.from(op.key), window });
  return { sealer, opener, window };
}

/** A header as ABE.md defines it, encoded with the shared CBOR codec in one call. */
export function referenceHeader(header: Omit<FrameHeader, 'n'> & { n: number | bigint }): Buffer {
  return encodeCbor(new Map<string, number | bigint | boolean | Buffer>([
    ['v', 1], ['session', header.session], ['n', header.n], ['buffer', header.buffer],
    ['chunk', header.chunk], ['last', header.last], ['dir', header.dir], ['digest', header.digest],
  ]));
}
