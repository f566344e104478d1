/**
 * sgs.json validation: every error names the field, what was wrong and what is allowed; the
 * summary `egpu sgs --check` prints, with the MPS settings of each partition.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { KERNEL_ATTESTATION_LOG_PATH } from '../../../../lib/observability/metric-catalogue';
import { SimulatedNsm } from '../../src/attestation/simulated-nsm';
import { loadSgsConfig, parseSgsConfig, SgsConfigError } from '../../src/sgs/config';
import { mpsSettings, renderConfigSummary } from '../../src/sgs/config-summary';
import { CLI, IMAGE_DIMENSION, REPO_ROOT, TSX, Workspace } from './fixtures';

const workspace = new Workspace(SimulatedNsm.create());
afterAll(() => workspace.remove());

function refusal(overrides: Record<string, unknown>, drop: string[] = []): SgsConfigError {
  const json = workspace.configJson(overrides);
  for (const name of drop) delete json[name];
  try {
    parseSgsConfig(json, workspace.dir);
  } catch (error) {
    expect(error).toBeInstanceOf(SgsConfigError);
    return error as SgsConfigError;
  }
  throw new Error('expected the configuration to be refused');
}

const pcrs = { pcr0: 'ab'.repeat(48), pcr1: 'cd'.repeat(48), pcr2: 'ef'.repeat(48) };

describe('sgs.json validation', () => {
  it('accepts the full shape and resolves it', () => {
    const config = workspace.config({ partitions: { default: { gpuShare: 0.25, memoryCapBytes: 2 ** 32, queueBound: 8 } }, maxInFlight: 16 });
    expect(config.enclaveListen).toEqual({ kind: 'unix', path: workspace.enclaveSocket });
    expect(config.health).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 0 });
    expect(config.root).not.toBe('aws');
    expect(config.allowlist[0].partition).toBe('default');
    expect(config.partitions.get('default')).toEqual({ gpuShare: 0.25, memoryCapBytes: 2 ** 32, queueBound: 8 });
  });

  it('fills sensible defaults for what it may leave out', () => {
    const config = parseSgsConfig({ enclaveListen: 'vsock:3:7410', context: 'unix:/run/egpu/context.sock', root: 'aws', allowlist: [pcrs] }, '/');
    expect(config).toMatchObject({ maxInFlight: 8, deadlineMs: 30_000, handshakeTimeoutMs: 30_000, drainTimeoutMs: 30_000, maxSessions: 256, maxBufferedBytes: 4 * 1024 ** 3, health: undefined, kernelAttestationLog: KERNEL_ATTESTATION_LOG_PATH });
    expect(config.metrics).toEqual({ enabled: false, instanceId: 'local', flushIntervalMs: 60_000, maxBufferedData: 10_000 });
    expect(config.partitions.get('default')).toEqual({ gpuShare: 1, memoryCapBytes: 2 ** 30, queueBound: 64 });
  });

  it.each([
    ['a missing field', {}, ['allowlist'], 'allowlist', /is required/],
    ['a misspelt field', { maxInflight: 4 }, [], 'maxInflight', /not a field SGS knows/],
    ['an address of the wrong form', { enclaveListen: 'localhost:7000' }, [], 'enclaveListen', /not an address/],
    ['a vsock context', { context: 'vsock:3:5000' }, [], 'context', /unix:\.\.\. or tcp:\.\.\./],
    ['a unix health address', { health: 'unix:/tmp/h.sock' }, [], 'health', /tcp:\.\.\./],
    ['an unreadable root', { root: 'missing.pem' }, [], 'root', /neither 'aws' nor a readable PEM/],
    ['an empty allowlist', { allowlist: [] }, [], 'allowlist', /1 to 256 images/],
    ['a short PCR', { allowlist: [{ ...pcrs, pcr1: 'abcd' }] }, [], 'allowlist[0].pcr1', /96 hex characters/],
    ['an unknown partition', { allowlist: [{ ...pcrs, partition: 'gold' }] }, [], 'allowlist[0].partition', /'gold'.*does not define/],
    ['a GPU share of 0', { partitions: { default: { gpuShare: 0, memoryCapBytes: 2 ** 30, queueBound: 4 } } }, [], 'partitions.default.gpuShare', /above 0 and at most 1/],
    ['a GPU share above 1', { partitions: { default: { gpuShare: 1.5, memoryCapBytes: 2 ** 30, queueBound: 4 } } }, [], 'partitions.default.gpuShare', /got 1.5/],
    ['a memory cap below one frame', { partitions: { default: { gpuShare: 1, memoryCapBytes: 1000, queueBound: 4 } } }, [], 'partitions.default.memoryCapBytes', /integer from 1052676/],
    ['a fractional queue bound', { partitions: { default: { gpuShare: 1, memoryCapBytes: 2 ** 30, queueBound: 2.5 } } }, [], 'partitions.default.queueBound', /integer/],
    ['maxInFlight 0', { maxInFlight: 0 }, [], 'maxInFlight', /from 1 to 4096/],
    ['a deadline as a string', { deadlineMs: '5s' }, [], 'deadlineMs', /got "5s"/],
    ['metrics without enabled', { metrics: { flushIntervalMs: 1000 } }, [], 'metrics.enabled', /is required/],
    ['a region that is not one', { metrics: { enabled: true, region: 'mars' } }, [], 'metrics.region', /not an AWS region/],
    ['a tiny flush interval', { metrics: { enabled: true, flushIntervalMs: 5 } }, [], 'metrics.flushIntervalMs', /from 100/],
    ['an unknown metrics field', { metrics: { enabled: true, namespace: 'X' } }, [], 'metrics.namespace', /not a field/],
  ])('refuses %s, naming the field', (_what, overrides, drop, field, reason) => {
    const error = refusal(overrides, drop);
    expect(error.field).toBe(field);
    expect(error.message).toMatch(reason);
    expect(error.message.startsWith(`SGS_CONFIG: ${field}: `)).toBe(true);
  });

  it('refuses an all-zero PCR0 under the AWS root: that admits debug-mode enclaves', () => {
    const error = refusal({ root: 'aws', allowlist: [{ pcr0: '0'.repeat(96), pcr1: '0'.repeat(96), pcr2: '0'.repeat(96) }] });
    expect(error.field).toBe('allowlist[0].pcr0');
    expect(error.message).toMatch(/debug-mode/);
  });

  it('names the file when it is not JSON', () => {
    const file = path.join(workspace.dir, 'broken.json');
    writeFileSync(file, '{ "root": ');
    expect(() => loadSgsConfig(file)).toThrow(/broken\.json: is not JSON/);
  });
});

describe('the configuration summary', () => {
  it('renders the MPS settings of every partition from its share and cap', () => {
    expect(mpsSettings({ gpuShare: 0.25, memoryCapBytes: 4 * 2 ** 30, queueBound: 8 })).toEqual({
      CUDA_MPS_ACTIVE_THREAD_PERCENTAGE: '25',
      CUDA_MPS_PINNED_DEVICE_MEM_LIMIT: '0=4096M',
    });
    const config = workspace.config({
      allowlist: [{ ...pcrs, partition: 'gold' }, { pcr0: 'aa'.repeat(48), pcr1: 'bb'.repeat(48), pcr2: 'cc'.repeat(48) }],
      partitions: { default: { gpuShare: 0.3, memoryCapBytes: 2 ** 30, queueBound: 8 }, gold: { gpuShare: 0.7, memoryCapBytes: 2 ** 33, queueBound: 32 } },
    });
    const summary = renderConfigSummary(config, { gpuPresent: false });
    expect(summary).toContain('EnclaveImage abababababababab  partition gold');
    expect(summary).toContain('default: gpuShare 0.3, memoryCapBytes 1073741824, queueBound 8; CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=30 CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0=1024M');
    expect(summary).toContain('gold: gpuShare 0.7, memoryCapBytes 8589934592, queueBound 32; CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=70 CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0=8192M');
    expect(summary).toContain('shown for reference: no GPU here');
    expect(renderConfigSummary(config, { gpuPresent: true })).toContain('apply: a GPU is present');
  });
});

describe('egpu sgs --check', () => {
  const run = (...args: string[]) => spawnSync(TSX, [CLI, 'sgs', ...args], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 60_000 });

  it('prints the summary and exits 0 for a valid file', () => {
    const result = run('--config', workspace.writeConfig(), '--check');
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(result.stdout).toContain(`EnclaveImage ${IMAGE_DIMENSION}  partition default`);
    expect(result.stdout).toContain('CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=100');
  });

  it('exits 1 naming the field for an invalid file', () => {
    const result = run('--config', workspace.writeConfig({ maxInFlight: -1 }), '--check');
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('egpu sgs: SGS_CONFIG: maxInFlight: must be an integer from 1 to 4096, got -1');
  });

  it('exits 2 without --config', () => {
    const result = run();
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('--config is required');
  });
});
