/**
 * SGS never holds a session key or plaintext. A real `egpu sgs` process relays operations
 * whose plaintext carries a random 32-byte canary, for a session whose key (and so every K_n)
 * the test knows; while SGS holds one of those operations queued, it writes a heap snapshot,
 * and the test also reads its whole memory. Neither the canary nor the session key nor any
 * K_n (raw, hex or base64) may appear there, nor in SGS's stdout, stderr or kernel log. Two
 * controls show the search would see them: a marker string from SGS's configuration is found
 * in the snapshot, and the ciphertext of the queued operation is found in its memory.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, expect, it } from 'vitest';
import { deriveOperationKey } from '../../src/abe/key-schedule';
import { SimulatedNsm } from '../../src/attestation/simulated-nsm';
import { HEAP_SNAPSHOT_ENV } from '../../src/sgs/heap-snapshot-hook';
import { FakeContext, INCREMENT_DIGEST, INCREMENT_KERNEL } from './fake-context';
import { FakeEgp } from './fake-egp';
import { IMAGE_PCRS, Workspace, until } from './fixtures';
import { encodings, found, scanProcessMemory } from './memory-scan';
import { SgsProcess } from './sgs-process';

const nsm = SimulatedNsm.create();
const workspace = new Workspace(nsm);
let context: FakeContext | undefined;
let sgs: SgsProcess | undefined;
let egp: FakeEgp | undefined;

afterAll(async () => {
  egp?.close();
  sgs?.kill();
  await context?.close();
  workspace.remove();
});

it('leaves no canary, session key or operation key in SGS\'s heap, memory, output or logs', async () => {
  const marker = `i-0${randomBytes(8).toString('hex')}`; // SGS holds this string (its InstanceId)
  context = await FakeContext.start(workspace.contextSocket, nsm.rootCertificate);
  sgs = await SgsProcess.start(workspace.writeConfig({
    maxInFlight: 1,
    metrics: { enabled: false, instanceId: marker, flushIntervalMs: 60_000, maxBufferedData: 100 },
  }), { [HEAP_SNAPSHOT_ENV]: workspace.dir });
  egp = await FakeEgp.connect(workspace.enclaveSocket);
  expect(await egp.open({ nsm, pcrs: IMAGE_PCRS })).toEqual({ ready: true });
  // The session key, as the enclave side holds it (private to AbeSession, read here on purpose).
  const sessionKey = Buffer.from((egp.session as unknown as { sessionKey: Buffer }).sessionKey);

  const canary = randomBytes(32);
  const payload = Buffer.concat([randomBytes(1000), canary, randomBytes(5000), canary, randomBytes(100)]);
  const launch = { op: 'launch' as const, kernel: INCREMENT_KERNEL, args: new Map<string, string | number>([['buffer', 1], ['note', canary.toString('hex')]]) };
  await egp.call(1, { op: 'htod', buffer: 1, size: payload.length }, payload);
  const echoed = await egp.call(2, { op: 'dtoh', buffer: 1 }); // the canary comes back through SGS
  expect(echoed.data.equals(payload)).toBe(true);
  await egp.call(3, launch, undefined, INCREMENT_DIGEST);
  const incremented = (await egp.call(4, { op: 'dtoh', buffer: 1 })).data;

  // Two more operations carrying the canary: 5 held at the context, 6 queued at SGS during the dumps.
  context.hold = true;
  egp.send(egp.seal(5, { op: 'htod', buffer: 2, size: payload.length }, payload));
  const queued = egp.seal(6, { op: 'htod', buffer: 3, size: payload.length }, payload);
  egp.send(queued);
  await until(() => context!.heldCount === 1, 'operation 5 at the context');
  let health = await sgs.health();
  while (health.body.queued !== 1) health = await sgs.health();

  const secrets = new Map<string, Buffer[]>([
    ['canary', encodings(canary)],
    ['canary + 1', encodings(Buffer.from(canary.map((b) => (b + 1) & 0xff)))],
    ['session key', encodings(sessionKey)],
    ...[1, 2, 3, 4, 5, 6].map((n) => [`K_${n}`, encodings(deriveOperationKey(sessionKey, n))] as [string, Buffer[]]),
  ]);
  expect(incremented.includes(Buffer.from(canary.map((b) => (b + 1) & 0xff)))).toBe(true);

  const before = sgs.stderr.length;
  sgs.signal('SIGUSR2');
  await until(() => /heap snapshot written: (\S+)/.test(sgs!.stderr.slice(before)), 'the heap snapshot');
  const snapshotPath = /heap snapshot written: (\S+)/.exec(sgs.stderr.slice(before))![1];
  const snapshot = readFileSync(snapshotPath);
  expect(snapshot.length).toBeGreaterThan(1_000_000);
  expect(snapshot.includes(Buffer.from(marker)), 'control: a string SGS holds is in the snapshot').toBe(true);
  expect(found(snapshot, secrets)).toEqual([]);

  const memory = scanProcessMemory(sgs.ready!.pid, new Map([...secrets, ['queued ciphertext', [queued[1].subarray(200, 264)]]]));
  if (memory === undefined) {
    console.warn('canary test: /proc/<pid>/mem is not readable here; only the heap snapshot was searched');
  } else {
    expect(memory.bytes).toBeGreaterThan(10_000_000);
    expect(memory.found.has('queued ciphertext'), 'control: a Buffer SGS holds is in its memory').toBe(true);
    expect([...memory.found].filter((name) => name !== 'queued ciphertext')).toEqual([]);
  }

  context.hold = false;
  context.release();
  await egp.answer(5);
  await egp.answer(6);
  sgs.signal('SIGTERM');
  expect(await sgs.exited).toBe(0);
  const outputs = Buffer.concat([Buffer.from(sgs.stdout), Buffer.from(sgs.stderr), readFileSync(workspace.kernelLog)]);
  expect(readFileSync(workspace.kernelLog, 'utf8')).toContain(INCREMENT_DIGEST.toString('hex')); // the log was written
  expect(found(outputs, secrets)).toEqual([]);
});
