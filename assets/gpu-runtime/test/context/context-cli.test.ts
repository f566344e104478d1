/**
 * `egpu context` as a real process (tsx on the CLI source) serving a real client over a Unix
 * socket: it logs one line per session start and end, applies its options, exits 0 on
 * SIGTERM and SIGINT (ending its sessions), replaces a stale socket left by a killed
 * context, and refuses bad usage. The bundle (dist/egpu.js) serves onnx.run from its worker
 * thread with --onnx-worker.
 */
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { ROOT_CERTIFICATE_FILE } from '../../src/attestation/simulated-nsm-state';
import { BUILTIN_KERNELS } from '../../src/kernels/builtins';
import { onnxModelDigest } from '../../src/kernels/registry';
import { parseAddress } from '../../src/protocol/transport';
import { TestClient, TestEnclave, directRun, f32Bytes, f32Values, matMulChain, randomF32, socketDir, uploadOnnxRun } from './helpers';

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..', '..');
const TSX = path.join(REPO_ROOT, 'node_modules', '.bin', 'tsx');
const CLI = path.join(REPO_ROOT, 'assets', 'gpu-runtime', 'src', 'cli.ts');
const BUNDLE = path.join(REPO_ROOT, 'assets', 'gpu-runtime', 'dist', 'egpu.js');

const enclave = new TestEnclave();
const workspace = socketDir();
enclave.nsm.save(path.join(workspace.dir, 'nsm'));
const ROOT_PEM = path.join(workspace.dir, 'nsm', ROOT_CERTIFICATE_FILE);
const pcrOptions = Object.entries(enclave.expectedPcrs).flatMap(([index, hex]) => ['--expect-pcr', `${index}=${hex}`]);
afterAll(() => workspace.remove());

/** Runs a 16×16 MatMul through onnx.run on `client`'s session and checks its output against a direct run. */
async function expectTinyModelRuns(client: TestClient): Promise<void> {
  const model = matMulChain(1, 16);
  const input = randomF32(16 * 16);
  const args = await uploadOnnxRun(client, model, input, [16, 16]);
  expect((await client.call({ op: 'launch', kernel: 'onnx.run', args }, { digest: onnxModelDigest(model) })).result).toEqual({ ok: true });
  const output = await client.call({ op: 'dtoh', buffer: 3 });
  expect(output.data!.equals(await directRun(model, input, [16, 16], { threads: 1, provider: 'cpu' }))).toBe(true);
}

class ContextProcess {
  /** Runs `egpu context` from the sources (tsx), or with `bundle` from dist/egpu.js. */
  static async start(socket: string, extra: string[] = [], bundle = false): Promise<ContextProcess> {
    const [command, ...entry] = bundle ? [process.execPath, BUNDLE] : [TSX, CLI];
    const child = spawn(command, [...entry, 'context', '--listen', `unix:${socket}`, '--root', ROOT_PEM, ...pcrOptions, ...extra], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const context = new ContextProcess(child);
    await vi.waitFor(() => {
      if (context.exitCode !== undefined) throw new Error(`egpu context exited with ${context.exitCode}: ${context.stderr}`);
      expect(context.pid).toBeDefined();
    }, { timeout: 30_000, interval: 20 });
    return context;
  }

  stderr = '';
  exitCode: number | null | undefined;
  readonly exited: Promise<number | null>;

  private constructor(readonly child: ChildProcess) {
    child.stderr!.setEncoding('utf8').on('data', (text: string) => { this.stderr += text; });
    child.stdout!.resume();
    this.exited = new Promise((resolve) => child.on('exit', (code) => { this.exitCode = code; resolve(code); }));
  }

  /** The context's own pid, from its listening line (tsx runs it in a child process). */
  get pid(): number | undefined {
    const match = /egpu context: listening on \S+ \(onnxruntime cpu, \d+ threads?(?:, in a worker (?:thread|process limited to \d+ bytes))?\), pid (\d+)/.exec(this.stderr);
    return match ? Number(match[1]) : undefined;
  }

  lines(pattern: RegExp): string[] {
    return this.stderr.split('\n').filter((line) => pattern.test(line));
  }
}

async function session(socket: string): Promise<TestClient> {
  const client = await TestClient.connect(parseAddress(`unix:${socket}`));
  await client.handshake(enclave.identity());
  return client;
}

describe('egpu context', () => {
  it('serves sessions, logs each start and end, and exits 0 on SIGTERM, ending the sessions still open', async () => {
    const socket = path.join(workspace.dir, 'a.sock');
    const context = await ContextProcess.start(socket, ['--memory-cap', '65536', '--threads', '2']);
    expect(context.stderr).toContain('(onnxruntime cpu, 2 threads)');

    const client = await session(socket);
    await client.call({ op: 'malloc', buffer: 1, size: 16 });
    await client.call({ op: 'htod', buffer: 1, size: 16 }, { data: f32Bytes([-1, 2, -3, 4]) });
    const relu = await client.call({ op: 'launch', kernel: 'relu', args: new Map([['input', 1], ['out', 1], ['count', 4]]) }, { digest: BUILTIN_KERNELS.relu.digest });
    expect(relu.result).toEqual({ ok: true });
    expect([...f32Values((await client.call({ op: 'dtoh', buffer: 1 })).data!)]).toEqual([0, 2, 0, 4]);
    // --memory-cap applies: 64 KiB per session.
    expect((await client.call({ op: 'malloc', buffer: 2, size: 65536 })).result).toMatchObject({ ok: false, code: 'OUT_OF_MEMORY' });
    client.close();
    const id = client.session!.sessionId.toString('hex');
    await vi.waitFor(() => expect(context.lines(new RegExp(id))).toHaveLength(2), { interval: 20 });
    expect(context.lines(new RegExp(id))).toEqual([
      expect.stringMatching(new RegExp(`^egpu context: session ${id} ready: enclave PCR0 [0-9a-f]{16}\\.\\.\\.$`)),
      `egpu context: session ${id} ended after 5 operations: closed`,
    ]);

    const open = await session(socket);
    process.kill(context.pid!, 'SIGTERM');
    expect(await context.exited).toBe(0);
    expect(await open.refusal()).toMatchObject({ closed: true });
    expect(context.stderr).toContain('egpu context: SIGTERM: ending 1 session');
    expect(existsSync(socket)).toBe(false);
  });

  it('exits 0 on SIGINT, and replaces the stale socket a killed context left behind', async () => {
    const socket = path.join(workspace.dir, 'b.sock');
    const killed = await ContextProcess.start(socket);
    process.kill(killed.pid!, 'SIGKILL');
    await killed.exited;
    expect(existsSync(socket)).toBe(true);

    const context = await ContextProcess.start(socket);
    const client = await session(socket);
    expect((await client.call({ op: 'malloc', buffer: 1, size: 4 })).result).toEqual({ ok: true });
    process.kill(context.pid!, 'SIGINT');
    expect(await context.exited).toBe(0);
  });

  it.skipIf(!existsSync(BUNDLE))('from the bundle with --onnx-worker, runs onnx.run in its worker thread (outputs identical to a direct run) and exits 0 on SIGTERM mid-run', async () => {
    const socket = path.join(workspace.dir, 'w.sock');
    const context = await ContextProcess.start(socket, ['--onnx-worker'], true);
    expect(context.stderr).toContain('(onnxruntime cpu, 1 thread, in a worker thread)');
    const client = await session(socket);
    await expectTinyModelRuns(client);
    client.close();

    // SIGTERM while a model is being built and run in the thread (more than a second here, the
    // signal comes 0.3 s in): the context ends once the run returns, and exits 0 (a thread
    // stopped mid-run aborts the process).
    const slow = await session(socket);
    const chain = matMulChain(160, 1024);
    const chainArgs = await uploadOnnxRun(slow, chain, randomF32(1024 * 1024), [1024, 1024]);
    await slow.send({ op: 'launch', kernel: 'onnx.run', args: chainArgs }, { digest: onnxModelDigest(chain) });
    let slowAnswered = false;
    void slow.next().then((record) => { slowAnswered = 'frame' in record; });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(slowAnswered).toBe(false); // the premise: the run is still going when the signal comes
    process.kill(context.pid!, 'SIGTERM');
    expect(await context.exited).toBe(0);
    expect(context.stderr).not.toMatch(/terminate called|Napi::Error/);
    expect(context.stderr).toContain('egpu context: SIGTERM: ending 1 session');
  });

  it.skipIf(!existsSync(BUNDLE))('from the bundle with --onnx-memory-limit, runs onnx.run in a worker process under that limit and exits 0 on SIGTERM', async () => {
    const socket = path.join(workspace.dir, 'p.sock');
    const context = await ContextProcess.start(socket, ['--onnx-memory-limit', String(2 * 1024 ** 3)], true);
    expect(context.stderr).toContain(`(onnxruntime cpu, 1 thread, in a worker process limited to ${2 * 1024 ** 3} bytes)`);
    const client = await session(socket);
    await expectTinyModelRuns(client);
    // The worker is a child of the context's, with the limit set: its RLIMIT_DATA is read from /proc.
    const children = readFileSync(`/proc/${context.pid}/task/${context.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
    const limits = children.map((pid) => readFileSync(`/proc/${pid}/limits`, 'utf8'));
    expect(limits.some((text) => /^Max data size\s+2147483648\s+2147483648\s+bytes/m.test(text))).toBe(true);
    client.close();
    process.kill(context.pid!, 'SIGTERM');
    expect(await context.exited).toBe(0);
  });

  it('refuses to start on a live context\'s socket', async () => {
    const socket = path.join(workspace.dir, 'c.sock');
    const first = await ContextProcess.start(socket);
    const second = spawnSync(TSX, [CLI, 'context', '--listen', `unix:${socket}`, '--root', ROOT_PEM, ...pcrOptions], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 30_000 });
    expect(second.status).toBe(1);
    expect(second.stderr).toContain(`another process is listening on ${socket}`);
    process.kill(first.pid!, 'SIGTERM');
    expect(await first.exited).toBe(0);
  });

  it.each([
    [['--root', ROOT_PEM], 2, '--listen is required'],
    [['--listen', 'unix:/tmp/x.sock', '--threads', '0'], 2, '--threads must be an integer from 1 to 256'],
    [['--listen', 'unix:/tmp/x.sock', '--memory-cap', '1e9'], 2, '--memory-cap must be an integer'],
    [['--listen', 'unix:/tmp/x.sock', '--onnx-memory-limit', '1000'], 2, '--onnx-memory-limit must be an integer from 1082130432 to'],
    [['--listen', 'unix:/tmp/x.sock', '--expect-pcr', '0=abcd'], 2, '--expect-pcr 0 must be 48 bytes of hex'],
    [['--listen', 'vsock:3:7000'], 2, '--listen must be a unix: or tcp: address'],
    [['--listen', 'unix:/tmp/x.sock'], 2, '--expect-pcr: the expected PCRs (none) do not name the enclave\'s code, so any image would be served: expect PCR0, PCR8, or PCR1 and PCR2 (the values nitro-cli describe-eif prints), or pass --allow-any-image for development'],
    [['--listen', 'unix:/tmp/x.sock', '--expect-pcr', `0=${'00'.repeat(48)}`], 2, '--expect-pcr: the expected PCR0 is all zeros, the measurement of an enclave in debug mode, whose memory the parent instance can read: expect the real measurements, or pass --allow-debug-mode for development'],
    [['--listen', 'unix:/tmp/x.sock', '--root', '/nonexistent/root.pem', ...pcrOptions], 1, 'cannot read /nonexistent/root.pem'],
  ])('egpu context %j exits %i: %s', (args, status, message) => {
    const result = spawnSync(TSX, [CLI, 'context', ...args], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 30_000 });
    expect(result.status).toBe(status);
    expect(result.stderr).toContain(message);
  });
});
