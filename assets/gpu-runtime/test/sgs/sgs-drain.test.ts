/**
 * The health endpoint and SIGTERM, on a real `egpu sgs` process: GET /health reports
 * sessions, queue and in-flight work; SIGTERM stops new sessions, lets queued and in-flight
 * operations finish (new ones are answered BUSY), ends the sessions cleanly and exits 0;
 * past drainTimeoutMs what remains ends with INTERNAL and SGS still exits 0.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { SimulatedNsm } from '../../src/attestation/simulated-nsm';
import { FakeContext } from './fake-context';
import { FakeEgp } from './fake-egp';
import { IMAGE_PCRS, Workspace, until } from './fixtures';
import { SgsProcess } from './sgs-process';

const nsm = SimulatedNsm.create();
const cleanup: Array<() => unknown> = [];

afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

async function setUp(overrides: Record<string, unknown>): Promise<{ workspace: Workspace; context: FakeContext; sgs: SgsProcess }> {
  const workspace = new Workspace(nsm);
  cleanup.push(() => workspace.remove());
  const context = await FakeContext.start(workspace.contextSocket, nsm.rootCertificate);
  cleanup.push(() => context.close());
  const sgs = await SgsProcess.start(workspace.writeConfig(overrides));
  cleanup.push(() => sgs.kill());
  return { workspace, context, sgs };
}

async function session(workspace: Workspace): Promise<FakeEgp> {
  const egp = await FakeEgp.connect(workspace.enclaveSocket);
  cleanup.push(() => egp.close());
  const outcome = await egp.open({ nsm, pcrs: IMAGE_PCRS });
  if (!outcome.ready) throw new Error(`refused: ${outcome.error.reason}`);
  return egp;
}

describe('egpu sgs: health and drain', () => {
  it('serves GET /health, and on SIGTERM finishes queued and in-flight operations, then exits 0', async () => {
    const { workspace, context, sgs } = await setUp({ maxInFlight: 1, drainTimeoutMs: 60_000 });
    expect(await sgs.health()).toEqual({ status: 200, body: { status: 'ok', sessions: 0, queued: 0, inFlight: 0, bufferedBytes: 0, metricsDropped: 0 } });
    expect((await fetch(sgs.ready!.healthUrl.replace('/health', '/metrics'))).status).toBe(404);

    context.hold = true;
    const egp = await session(workspace);
    for (const n of [1, 2, 3]) egp.send(egp.seal(n, { op: 'malloc', buffer: n, size: 8 }));
    await until(() => context.heldCount === 1, 'operation 1 at the context');
    let health = await sgs.health();
    while (health.body.queued !== 2) health = await sgs.health();
    expect(health.body).toMatchObject({ status: 'ok', sessions: 1, queued: 2, inFlight: 1, metricsDropped: 0 });
    expect(health.body.bufferedBytes).toBeGreaterThan(0);

    sgs.signal('SIGTERM');
    while (health.body.status !== 'draining') health = await sgs.health();
    expect(health.body).toMatchObject({ status: 'draining', sessions: 1, queued: 2, inFlight: 1 });
    await expect(FakeEgp.connect(workspace.enclaveSocket)).rejects.toThrow(); // no new sessions

    egp.send(egp.seal(4, { op: 'malloc', buffer: 4, size: 8 }));
    expect(await egp.expectError('BUSY')).toMatchObject({ n: 4 });
    context.hold = false;
    context.release();
    for (const n of [1, 2, 3]) expect((await egp.answer(n)).result).toEqual({ ok: true });
    expect(await egp.next()).toEqual({ kind: 'closed', error: undefined }); // ended cleanly: no error
    expect(await sgs.exited).toBe(0);
    expect(context.received.map((op) => op.n)).toEqual([1, 2, 3]);
    expect(sgs.stderr).toContain('sgs: SIGTERM: draining');
    expect(sgs.stderr).toContain('sgs: stopped');
  });

  it('ends what is left with INTERNAL after drainTimeoutMs, and still exits 0', async () => {
    const { workspace, context, sgs } = await setUp({ drainTimeoutMs: 300 });
    context.hold = true;
    const egp = await session(workspace);
    egp.send(egp.seal(1, { op: 'malloc', buffer: 1, size: 8 }));
    await until(() => context.heldCount === 1, 'operation 1 at the context');
    sgs.signal('SIGTERM');
    expect((await egp.expectError('INTERNAL')).reason).toMatch(/shut down/);
    expect(await sgs.exited).toBe(0);
  });

  it('ends a session still being set up at once', async () => {
    const { workspace, sgs } = await setUp({});
    const egp = await FakeEgp.connect(workspace.enclaveSocket);
    cleanup.push(() => egp.close());
    let health = await sgs.health();
    while (health.body.sessions !== 1) health = await sgs.health();
    sgs.signal('SIGTERM');
    expect((await egp.expectError('INTERNAL')).reason).toMatch(/shutting down/);
    expect(await sgs.exited).toBe(0);
  });
});
