/**
 * SGS with the real execution context (src/context/) behind it, over real sockets: the
 * handshake verified twice (by SGS, then by the context), a relu launch on f32 data, the
 * result read back, and the kernel-attestation record naming the built-in's real digest.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { SimulatedNsm } from '../../src/attestation/simulated-nsm';
import { ExecutionContext } from '../../src/context/execution-context';
import { BUILTIN_KERNELS } from '../../src/kernels/builtins';
import { SgsServer } from '../../src/sgs/server';
import { FakeEgp } from './fake-egp';
import { IMAGE_PCRS, OTHER_PCRS, Workspace } from './fixtures';

const nsm = SimulatedNsm.create();
const workspace = new Workspace(nsm);
let context: ExecutionContext;
let sgs: SgsServer;

beforeAll(async () => {
  context = await ExecutionContext.start({
    listen: `unix:${workspace.contextSocket}`,
    root: nsm.rootCertificate,
    expectedPcrs: { 0: IMAGE_PCRS[0].toString('hex'), 1: IMAGE_PCRS[1].toString('hex'), 2: IMAGE_PCRS[2].toString('hex') },
    onnxProvider: 'cpu',
  });
  sgs = await workspace.startSgs({ metrics: { enabled: false, instanceId: 'i-0fedcba9876543210', flushIntervalMs: 60_000, maxBufferedData: 10 } });
});

afterAll(async () => {
  await sgs.close();
  await context.close();
  workspace.remove();
});

it('relays a session to the real context: relu runs, its result comes back, its digest is logged', async () => {
  const egp = await FakeEgp.connect(workspace.enclaveSocket);
  expect(await egp.open({ nsm, pcrs: IMAGE_PCRS })).toEqual({ ready: true });
  const input = Buffer.from(new Float32Array([-1.5, 2, -3, 4.25, 0, -0]).buffer);
  expect((await egp.call(1, { op: 'malloc', buffer: 1, size: input.length })).result).toEqual({ ok: true });
  expect((await egp.call(2, { op: 'htod', buffer: 1, size: input.length }, input)).result).toEqual({ ok: true });
  const relu = BUILTIN_KERNELS.relu;
  const launched = await egp.call(3, { op: 'launch', kernel: 'relu', args: new Map([['input', 1], ['out', 1], ['count', 6]]) }, undefined, relu.digest);
  expect(launched.result).toEqual({ ok: true });
  expect(launched.done).toMatchObject({ n: 3, kernel: 'relu', codeSha384: relu.digest });
  expect(launched.done.queueUs).toBeGreaterThanOrEqual(0);
  const read = await egp.call(4, { op: 'dtoh', buffer: 1 });
  expect([...new Float32Array(read.data.buffer, read.data.byteOffset, 6)]).toEqual([0, 2, 0, 4.25, 0, -0]);
  // The enclave sees no device: it is for SGS's metrics and log (older enclave images refuse unknown fields).
  expect(launched.done.device).toBeUndefined();
  const refused = await egp.call(5, { op: 'launch', kernel: 'relu', args: new Map([['input', 1], ['out', 1], ['count', 6]]) }, undefined, BUILTIN_KERNELS.add.digest);
  expect(refused.result).toMatchObject({ ok: false, code: 'DIGEST_MISMATCH' });
  egp.close();
  await sgs.close();
  const [record, refusedRecord] = readFileSync(workspace.kernelLog, 'utf8').trim().split('\n').map((line) => JSON.parse(line));
  expect(record).toMatchObject({ launch: 3, kernel: 'relu', codeSha384: relu.digest.toString('hex'), device: 'cpu', instanceId: 'i-0fedcba9876543210' });
  // A refused launch ran nothing: no device, and 48 zero bytes as its code.
  expect(refusedRecord).toMatchObject({ launch: 5, kernel: 'relu', codeSha384: '00'.repeat(48) });
  expect(refusedRecord).not.toHaveProperty('device');
});

it('never lets an enclave it refuses reach the real context', async () => {
  const other = new Workspace(nsm);
  const server = await SgsServer.start(other.config({ context: `unix:${workspace.contextSocket}` }), { log: () => {} });
  try {
    const egp = await FakeEgp.connect(other.enclaveSocket);
    expect(await egp.open({ nsm, pcrs: OTHER_PCRS })).toMatchObject({ ready: false, error: { code: 'UNAUTHORIZED' } });
  } finally {
    await server.close();
    other.remove();
  }
});
