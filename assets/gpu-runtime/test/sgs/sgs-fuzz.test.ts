/**
 * Fuzzing SGS's enclave link with fast-check, over real sockets, with at least 100,000 random
 * and mutated records (EGPU_FUZZ_RECORDS changes it; EGPU_FUZZ_SEED replays a run):
 *
 * - loose connections, one per record or two to three records cut anywhere: random bytes,
 *   random CBOR, control messages whole or mutated, frames whole or mutated, absurd lengths.
 *   Each connection counts once, however many records it carried, since SGS may refuse the
 *   first and never read the rest;
 * - sessions: a real handshake, then real operations until one step sends a mutated frame, a
 *   replayed frame or another record (the step that ends the session; the script stops there).
 *
 * Each connection is then closed from the EGP's side. What is checked: SGS neither crashes
 * (an uncaught error fails the run) nor hangs (every connection ends), everything it sends
 * is a protocol record, every refusal is a typed error message and ends the session (BUSY
 * excepted), and afterwards it holds no session, queue or slot, and serves a normal session.
 * Below the socket, a second test pushes another 100,000 frames of real operations, a fifth
 * of them mutated, through the inbound path (assembler and operation gate) directly, where
 * starting again after each refusal costs no handshake.
 */
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { parseFrame } from '../../src/abe/frame-codec';
import { FrameReader } from '../../src/abe/frame-reader';
import { SimulatedNsm } from '../../src/attestation/simulated-nsm';
import { ENCLAVE_TO_HOST } from '../../src/abe/frame-header';
import { sealBuffer } from '../../src/abe/frame';
import { AbeSession } from '../../src/abe/session';
import { decodeControl } from '../../src/protocol/control';
import { encodeRequest } from '../../src/protocol/op-descriptor';
import { WireError } from '../../src/protocol/wire-error';
import { CiphertextBudget } from '../../src/sgs/ciphertext-budget';
import { InboundAssembler } from '../../src/sgs/inbound-assembler';
import { OperationPipeline } from '../../src/sgs/operation-pipeline';
import { FakeEgp, Incoming } from './fake-egp';
import { IMAGE_PCRS, until } from './fixtures';
import { SessionStep, looseRecordArb, mutate, mutationArb, requestArb, sessionStepArb } from './fuzz-records';
import { Harness } from './harness';

const TOTAL_RECORDS = Number(process.env.EGPU_FUZZ_RECORDS ?? 100_000);
const SESSIONS = 160;
const PARALLEL = 64;
/** Longest a connection may stay open after the EGP closed its side: only a hang takes this long. */
const HANG_MS = 30_000;

const nsm = SimulatedNsm.create();
let harness: Harness;

beforeAll(async () => {
  harness = await Harness.start(nsm, { maxSessions: 4096, maxInFlight: 8, deadlineMs: 120_000, handshakeTimeoutMs: 120_000 });
});

afterAll(() => harness.stop());

interface LooseOutcome {
  readonly received: Buffer;
  readonly hung: boolean;
}

/** Sends the records on a new connection, closes its side, and collects what SGS sends until it closes. */
function looseConnection(records: readonly Buffer[]): Promise<LooseOutcome> {
  return new Promise((resolve) => {
    const received: Buffer[] = [];
    const socket = connect(harness.workspace.enclaveSocket);
    const hang = setTimeout(() => { socket.destroy(); resolve({ received: Buffer.concat(received), hung: true }); }, HANG_MS);
    socket.on('connect', () => {
      for (const record of records) socket.write(record);
      socket.end();
    });
    socket.on('data', (chunk) => received.push(chunk));
    socket.on('error', () => {}); // SGS may close while we still write: that is its refusal
    socket.on('close', () => {
      clearTimeout(hang);
      resolve({ received: Buffer.concat(received), hung: false });
    });
  });
}

/** What SGS sent a loose connection: only hello (after an open) and error messages, nothing after a final error. */
function checkLoose(outcome: LooseOutcome): void {
  expect(outcome.hung, 'the connection hung').toBe(false);
  const records = new FrameReader().push(outcome.received);
  records.forEach((record, index) => {
    expect(record[4], 'SGS sent a frame on a connection without a session').not.toBe(0x83);
    const message = decodeControl(record); // throws unless a well-formed, typed control message
    expect(['hello', 'error']).toContain(message.t);
    if (message.t === 'error' && message.code !== 'BUSY') expect(index, 'a record after a final error').toBe(records.length - 1);
  });
}

/** Runs one session script; returns the records sent and what came back. */
async function sessionConnection(steps: readonly SessionStep[]): Promise<{ sent: number; inbox: Incoming[]; hung: boolean }> {
  const egp = await FakeEgp.connect(harness.workspace.enclaveSocket);
  const outcome = await egp.open({ nsm, pcrs: IMAGE_PCRS });
  if (!outcome.ready) throw new Error(`the session was refused: ${outcome.error.reason}`);
  const history: Buffer[] = [];
  let n = 0;
  let sent = 0;
  const send = (frames: Buffer[]) => {
    egp.send(frames);
    history.push(...frames);
    sent += frames.length;
  };
  for (const step of steps) {
    if (step.kind === 'replay' && history.length === 0) continue;
    switch (step.kind) {
      case 'operation':
        send(egp.seal(++n, step.operation.request, step.operation.data, step.operation.digest));
        break;
      case 'mutated': {
        const frames = egp.seal(++n, step.operation.request, step.operation.data, step.operation.digest);
        const at = step.frame % frames.length;
        frames[at] = mutate(frames[at], step.mutation);
        send(frames);
        break;
      }
      case 'replay':
        send([history[step.index % history.length]]);
        break;
      case 'control':
        send([step.record]);
        break;
      case 'skip':
        n += step.by;
        break;
    }
    if (step.kind === 'mutated' || step.kind === 'replay' || step.kind === 'control') break; // what follows would go unread
  }
  egp.connection.socket.end();
  const inbox: Incoming[] = [];
  const hang = new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), HANG_MS).unref());
  for (;;) {
    const item = await Promise.race([egp.next(), hang]);
    if (item === 'hung') return { sent, inbox, hung: true };
    inbox.push(item);
    if (item.kind === 'closed') break;
  }
  egp.close();
  return { sent, inbox, hung: false };
}

function checkSession(result: { inbox: Incoming[]; hung: boolean }): void {
  expect(result.hung, 'the session hung').toBe(false);
  const { inbox } = result;
  const closed = inbox.at(-1)!;
  expect(closed.kind).toBe('closed');
  if (closed.kind === 'closed' && closed.error) {
    // Only a reset while the EGP still wrote; never bytes the EGP could not parse.
    expect(closed.error).toMatchObject({ code: 'INTERNAL', reason: 'the connection failed' });
  }
  inbox.slice(0, -1).forEach((item, index) => {
    if (item.kind !== 'control') return;
    expect(['done', 'error']).toContain(item.message.t);
    if (item.message.t === 'error' && item.message.code !== 'BUSY') expect(index, 'a record after a final error').toBe(inbox.length - 2);
  });
}

it(`refuses ${TOTAL_RECORDS} random and mutated records with typed errors or a clean close`, async () => {
  const seed = Number(process.env.EGPU_FUZZ_SEED ?? Date.now() % 2 ** 31);
  let looseRecords = 0;
  let connections = 0;
  await fc.assert(fc.asyncProperty(fc.array(fc.array(looseRecordArb, { minLength: 1, maxLength: 3 }), { minLength: PARALLEL, maxLength: PARALLEL }), async (scripts) => {
    const outcomes = await Promise.all(scripts.map(looseConnection));
    outcomes.forEach(checkLoose);
    looseRecords += scripts.reduce((sum, script) => sum + script.length, 0);
    connections += scripts.length;
  }), { numRuns: Math.ceil(TOTAL_RECORDS / PARALLEL), seed });

  let sessionRecords = 0;
  const sessionProperty = fc.asyncProperty(fc.array(fc.array(sessionStepArb, { minLength: 1, maxLength: 200, size: 'max' }), { minLength: 8, maxLength: 8 }), async (scripts) => {
    const results = await Promise.all(scripts.map(sessionConnection));
    results.forEach(checkSession);
    sessionRecords += results.reduce((sum, result) => sum + result.sent, 0);
  });
  await fc.assert(sessionProperty, { numRuns: SESSIONS / 8, seed });

  console.log(`sgs fuzz (seed ${seed}): ${looseRecords} records on ${connections} loose connections, ${sessionRecords} records in ${SESSIONS} sessions`);
  expect(connections).toBeGreaterThanOrEqual(TOTAL_RECORDS);
  await until(() => harness.sgs.stats().sessions === 0, 'every session to end');
  expect(harness.sgs.stats()).toMatchObject({ status: 'ok', sessions: 0, queued: 0, inFlight: 0 });
  const egp = await harness.session();
  expect((await egp.call(1, { op: 'malloc', buffer: 1, size: 8 })).result).toEqual({ ok: true });
}, 600_000);


it('the inbound path takes 100,000 real and mutated frames, refusing only with typed WireErrors', () => {
  const sessionId = randomBytes(16);
  const partition = { gpuShare: 1, memoryCapBytes: 8 * 1024 * 1024, queueBound: 4 };
  const budget = new CiphertextBudget(64 * 1024 * 1024);
  // A context socket that writes at once: each dispatched frame leaves the budget as it is sent.
  const host = { sendToContext: (frames: readonly Buffer[], written?: (bytes: number) => void) => { for (const frame of frames) written?.(frame.length); }, sendToEnclave: () => {}, expire: () => {}, queued: () => {}, replayed: () => {}, completed: () => {} };
  let frames = 0;
  const refusals = new Map<string, number>();
  const property = fc.property(fc.array(fc.record({ operation: requestArb, mutation: fc.option(mutationArb, { freq: 4 }), frame: fc.nat(), replay: fc.boolean() }), { minLength: 1, maxLength: 40 }), (steps) => {
    const enclave = new AbeSession(sessionId, randomBytes(32));
    let pipeline = new OperationPipeline(host, partition, 60_000, budget);
    let assembler = new InboundAssembler(sessionId, pipeline);
    const history: Buffer[] = [];
    let n = 0;
    for (const step of steps) {
      const sealer = enclave.sealer(++n, ENCLAVE_TO_HOST, step.operation.digest);
      const sealed = [sealer.seal(0, encodeRequest(step.operation.request), step.operation.data === undefined)];
      if (step.operation.data !== undefined) sealed.push(...sealBuffer(sealer, (step.operation.request as { buffer: number }).buffer, step.operation.data, true));
      if (step.mutation !== null) sealed[step.frame % sealed.length] = mutate(sealed[step.frame % sealed.length], step.mutation);
      if (step.replay && history.length > 0) sealed.push(history[step.frame % history.length]);
      for (const frame of sealed) {
        frames++;
        history.push(frame);
        try {
          const ended = assembler.push(frame);
          const { header } = parseFrame(frame); // it parsed in push
          // As SGS does: the front operation goes to the context as soon as it has begun (cut-through).
          if (pipeline.hasQueued()) pipeline.dispatchNext();
          if (ended && pipeline.headInFlight === header.n) {
            pipeline.complete({ t: 'done', n: header.n, kernel: 'k', codeSha384: header.digest, computeUs: 1 });
          }
        } catch (error) {
          expect(error).toBeInstanceOf(WireError);
          refusals.set((error as WireError).code, (refusals.get((error as WireError).code) ?? 0) + 1);
          pipeline.close(); // the session ends; the enclave would start a new one
          pipeline = new OperationPipeline(host, partition, 60_000, budget);
          assembler = new InboundAssembler(sessionId, pipeline);
        }
      }
    }
    pipeline.close();
  });
  const seed = Number(process.env.EGPU_FUZZ_SEED ?? Date.now() % 2 ** 31);
  for (let round = 0; frames < TOTAL_RECORDS; round++) fc.assert(property, { numRuns: 200, seed: seed + round });
  console.log(`sgs inbound fuzz: ${frames} frames, refusals ${JSON.stringify(Object.fromEntries(refusals))}`);
  expect(frames).toBeGreaterThanOrEqual(TOTAL_RECORDS);
  expect(budget.bytes).toBe(0); // every refusal gave back what its operation held
  expect([...refusals.keys()].sort()).toEqual(expect.arrayContaining(['MALFORMED', 'REPLAY']));
}, 600_000);
