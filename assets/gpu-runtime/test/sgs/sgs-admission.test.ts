/**
 * Admission over real sockets: SGS relays the handshake between a fake EGP (real enclave-side
 * ABE, simulated NSM) and a fake context, verifies the enclave's document itself, and refuses
 * with UNAUTHORIZED (and counts an AttestationFailure) when the chain, nonce or PCRs are wrong.
 */
import { randomBytes } from 'node:crypto';
import { CloudWatchClient, PutMetricDataCommand } from '@aws-sdk/client-cloudwatch';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SimulatedNsm } from '../../src/attestation/simulated-nsm';
import { HANDSHAKE_DOCUMENT_MAX_AGE_MS } from '../../src/attestation/verify';
import { SgsServer } from '../../src/sgs/server';
import { FakeContext } from './fake-context';
import { FakeEgp } from './fake-egp';
import { IMAGE_DIMENSION, IMAGE_PCRS, OTHER_PCRS, Workspace, until } from './fixtures';

const nsm = SimulatedNsm.create();
const cloudWatch = mockClient(CloudWatchClient);
let workspace: Workspace;
let context: FakeContext;
let sgs: SgsServer;

beforeAll(async () => {
  workspace = new Workspace(nsm);
  context = await FakeContext.start(workspace.contextSocket, nsm.rootCertificate);
  sgs = await workspace.startSgs({ metrics: { enabled: true, region: 'us-east-1', instanceId: 'i-0123456789abcdef0', flushIntervalMs: 3_600_000, maxBufferedData: 1000 } }, { cloudWatch: new CloudWatchClient({ region: 'us-east-1' }) });
});

afterAll(async () => {
  await sgs.close();
  await context.close();
  workspace.remove();
  cloudWatch.restore();
});

afterEach(() => cloudWatch.reset());

async function attestationFailuresFlushed(): Promise<number> {
  cloudWatch.on(PutMetricDataCommand).resolves({});
  await sgs.flushMetrics();
  const data = cloudWatch.commandCalls(PutMetricDataCommand).flatMap((call) => call.args[0].input.MetricData ?? []);
  return data.filter((d) => d.MetricName === 'AttestationFailures' && d.Dimensions?.length === 1).reduce((sum, d) => sum + (d.Value ?? 0), 0);
}

describe('SGS admission', () => {
  it('admits an enclave whose document verifies and whose PCRs are allowed', async () => {
    const egp = await FakeEgp.connect(workspace.enclaveSocket);
    expect(await egp.open({ nsm, pcrs: IMAGE_PCRS })).toEqual({ ready: true });
    await until(() => context.sessions === 1, 'the context session');
    expect(sgs.stats()).toMatchObject({ status: 'ok', sessions: 1 });
    egp.close();
    await until(() => sgs.stats().sessions === 0, 'the session to end');
    expect(await attestationFailuresFlushed()).toBe(0);
  });

  it('refuses PCRs outside the allowlist with UNAUTHORIZED and counts an AttestationFailure', async () => {
    const egp = await FakeEgp.connect(workspace.enclaveSocket);
    const outcome = await egp.open({ nsm, pcrs: OTHER_PCRS });
    expect(outcome).toMatchObject({ ready: false, error: { t: 'error', code: 'UNAUTHORIZED' } });
    expect((outcome as { error: { reason: string } }).error.reason).toMatch(/not in the allowlist/);
    await egp.expectClosed();
    expect(await attestationFailuresFlushed()).toBe(1);
  });

  it('refuses a document chained to another root', async () => {
    const stranger = SimulatedNsm.create();
    const egp = await FakeEgp.connect(workspace.enclaveSocket);
    const outcome = await egp.open({ nsm: stranger, pcrs: IMAGE_PCRS });
    expect(outcome).toMatchObject({ ready: false, error: { code: 'UNAUTHORIZED' } });
    await egp.expectClosed();
    expect(await attestationFailuresFlushed()).toBe(1);
  });

  it('refuses a document with another nonce (a replayed attestation)', async () => {
    const egp = await FakeEgp.connect(workspace.enclaveSocket);
    const outcome = await egp.open({ nsm, pcrs: IMAGE_PCRS, tamper: ({ nonce }) => nonce.set(randomBytes(32)) });
    expect(outcome).toMatchObject({ ready: false, error: { code: 'UNAUTHORIZED' } });
    expect((outcome as { error: { reason: string } }).error.reason).toMatch(/NONCE_MISMATCH/);
    await egp.expectClosed();
  });

  it('refuses a document made more than five minutes ago (STALE), as the context would', async () => {
    const egp = await FakeEgp.connect(workspace.enclaveSocket);
    const outcome = await egp.open({ nsm, pcrs: IMAGE_PCRS, timestamp: new Date(Date.now() - HANDSHAKE_DOCUMENT_MAX_AGE_MS - 60_000) });
    expect(outcome).toMatchObject({ ready: false, error: { code: 'UNAUTHORIZED' } });
    expect((outcome as { error: { reason: string } }).error.reason).toMatch(/^STALE: the document was made at /);
    await egp.expectClosed();
  });

  it('never lets a refused enclave reach the context: no session is established there', async () => {
    const before = context.sessions;
    const egp = await FakeEgp.connect(workspace.enclaveSocket);
    await egp.open({ nsm, pcrs: OTHER_PCRS });
    await egp.expectClosed();
    await until(() => sgs.stats().sessions === 0, 'the session to end');
    expect(context.sessions).toBe(before);
  });

  it('uses the allowlisted image as the EnclaveImage of attestation failures', async () => {
    const egp = await FakeEgp.connect(workspace.enclaveSocket);
    await egp.open({ nsm, pcrs: OTHER_PCRS });
    await egp.expectClosed();
    cloudWatch.on(PutMetricDataCommand).resolves({});
    await sgs.flushMetrics();
    const failures = cloudWatch.commandCalls(PutMetricDataCommand).flatMap((call) => call.args[0].input.MetricData ?? []).filter((d) => d.MetricName === 'AttestationFailures');
    expect(failures.map((d) => d.Dimensions)).toEqual([
      [{ Name: 'InstanceId', Value: 'i-0123456789abcdef0' }, { Name: 'EnclaveImage', Value: IMAGE_DIMENSION }],
      [{ Name: 'EnclaveImage', Value: IMAGE_DIMENSION }],
    ]);
  });
});

describe('SGS admission with the AWS root pinned', () => {
  it('refuses a simulated-NSM document (wrong root) when the AWS Nitro root is pinned', async () => {
    const aws = new Workspace(nsm);
    const awsContext = await FakeContext.start(aws.contextSocket, nsm.rootCertificate);
    const server = await aws.startSgs({ root: 'aws' });
    try {
      const egp = await FakeEgp.connect(aws.enclaveSocket);
      const outcome = await egp.open({ nsm, pcrs: IMAGE_PCRS });
      expect(outcome).toMatchObject({ ready: false, error: { code: 'UNAUTHORIZED' } });
      await egp.expectClosed();
      expect(awsContext.sessions).toBe(0);
    } finally {
      await server.close();
      await awsContext.close();
      aws.remove();
    }
  });
});
