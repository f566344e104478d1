/**
 * The EGP socket API (README, "EGP socket API"): newline-delimited JSON over a Unix socket,
 * served in-process and by the real `egpu egp` command, against real SGS and context
 * processes. Requests are pipelined; refusals come back as typed errors on their id.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as net from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { egpuCommand, LocalStack, startLocalStack } from '../../src/egp/local-stack';
import { BufferPool } from '../../src/buffer-pool';
import { DEFAULT_LIMITS } from '../../src/egp/client';
import { EgpSocketServer } from '../../src/egp/socket-server';
import { errorLine, parseRequest } from '../../src/egp/socket-protocol';
import { parseAddress } from '../../src/protocol/transport';
import { f32Bytes, f32Values } from './helpers';

type Response = { id: string | number | null; result?: Record<string, unknown>; error?: { code: string; reason: string; remote?: string } };

/** A line client: sends requests, resolves each response by id. */
class LineClient {
  static open(path: string): Promise<LineClient> {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection(path, () => resolve(new LineClient(socket)));
      socket.once('error', reject);
    });
  }

  readonly unmatched: Response[] = [];
  private onUnmatched?: (response: Response) => void;
  private readonly waiting = new Map<string | number, (response: Response) => void>();
  private rest = '';

  private constructor(readonly socket: net.Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (text: string) => {
      const lines = (this.rest + text).split('\n');
      this.rest = lines.pop()!;
      for (const line of lines) {
        const response = JSON.parse(line) as Response;
        const waiter = response.id === null ? undefined : this.waiting.get(response.id);
        if (waiter) waiter(response);
        else {
          this.unmatched.push(response);
          this.onUnmatched?.(response);
        }
      }
    });
  }

  call(id: string | number, method: string, params: Record<string, unknown> = {}): Promise<Response> {
    const answered = new Promise<Response>((resolve) => this.waiting.set(id, resolve));
    this.socket.write(`${JSON.stringify({ id, method, params })}\n`);
    return answered;
  }

  /** Resolves with the response on `id`, or with one on no awaited id (`id` null) if that comes first. */
  callOrStray(id: string | number, method: string, params: Record<string, unknown> = {}): Promise<Response> {
    return Promise.race([this.call(id, method, params), new Promise<Response>((resolve) => { this.onUnmatched = resolve; })]);
  }

  raw(line: string): void {
    this.socket.write(line);
  }

  close(): void {
    this.socket.destroy();
  }
}

describe('EGP socket API', () => {
  let stack: LocalStack;
  let server: EgpSocketServer;
  let path: string;

  beforeAll(async () => {
    stack = await startLocalStack();
    path = join(stack.dir, 'egp.sock');
    server = await EgpSocketServer.start({ listen: parseAddress(`unix:${path}`), sgs: parseAddress(stack.sgsAddress), enclave: stack.enclave });
  });

  afterAll(async () => {
    await server?.close();
    await stack?.stop();
  });

  it('runs malloc, memcpyHtoD, launchKernel, memcpyDtoH, free and synchronize, pipelined', async () => {
    const client = await LineClient.open(path);
    const [a, b] = await Promise.all([client.call(1, 'malloc', { size: 12 }), client.call(2, 'malloc', { size: 12 })]);
    const bufferA = a.result!.buffer as number;
    const bufferB = b.result!.buffer as number;
    const calls = [
      client.call(3, 'memcpyHtoD', { buffer: bufferA, data: f32Bytes([1, 2, 3]).toString('base64') }),
      client.call(4, 'memcpyHtoD', { buffer: bufferB, data: f32Bytes([0.5, 0.25, -3]).toString('base64') }),
      client.call('launch', 'launchKernel', { kernel: 'add', args: { a: bufferA, b: bufferB, out: bufferA, count: 3 } }),
      client.call('read', 'memcpyDtoH', { buffer: bufferA }),
      client.call('sync', 'synchronize'),
      client.call('free', 'free', { buffer: bufferB }),
    ];
    const [, , launched, read, sync, freed] = await Promise.all(calls);
    expect(launched.result).toMatchObject({ kernel: 'add' });
    expect(launched.result).not.toHaveProperty('device'); // SGS keeps it for its metrics and log
    expect(launched.result!.codeSha384).toMatch(/^[0-9a-f]{96}$/);
    expect(f32Values(Buffer.from(read.result!.data as string, 'base64'))).toEqual([1.5, 2.25, 0]);
    expect(sync.result).toEqual({});
    expect(freed.result).toEqual({});
    client.close();
  });

  it('answers refusals as typed errors on their id and keeps serving', async () => {
    const client = await LineClient.open(path);
    client.raw('not json\n');
    expect(await client.call(1, 'cudaMalloc', {})).toMatchObject({ id: 1, error: { code: 'BAD_REQUEST' } });
    expect(await client.call(2, 'malloc', { size: -1 })).toMatchObject({ error: { code: 'BAD_REQUEST' } });
    expect(await client.call(3, 'memcpyHtoD', { buffer: 1, data: '***' })).toMatchObject({ error: { code: 'BAD_REQUEST' } });
    for (const data of ['AAA', 'AA=A', 'A===', 'AAAAA===', '====']) {
      expect(await client.call(`b64 ${data}`, 'memcpyHtoD', { buffer: 1, data })).toMatchObject({ error: { code: 'BAD_REQUEST' } });
    }
    expect(await client.call(4, 'memcpyDtoH', { buffer: 42 })).toMatchObject({ error: { code: 'INVALID_ARGUMENT' } });
    const small = (await client.call(5, 'malloc', { size: 4 })).result!.buffer;
    expect(await client.call(6, 'launchKernel', { kernel: 'relu', args: { input: small, out: small, count: 9 } }))
      .toMatchObject({ error: { code: 'OPERATION_FAILED', remote: 'BAD_ARGS' } });
    expect(await client.call(7, 'free', { buffer: small })).toMatchObject({ result: {} });
    expect(client.unmatched).toEqual([expect.objectContaining({ id: null, error: expect.objectContaining({ code: 'BAD_REQUEST' }) })]);
    client.close();
  });

  it('carries several MB each way (base64 checked in linear time, not by a backtracking regex)', async () => {
    const client = await LineClient.open(path);
    const data = Buffer.alloc(6_000_000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7 + (i >> 11)) & 0xff;
    const buffer = (await client.call(1, 'malloc', { size: data.length })).result!.buffer;
    expect(await client.callOrStray(2, 'memcpyHtoD', { buffer, data: data.toString('base64') })).toEqual({ id: 2, result: {} });
    const read = await client.call(3, 'memcpyDtoH', { buffer });
    expect(Buffer.from(read.result!.data as string, 'base64').equals(data)).toBe(true);
    expect(client.unmatched).toEqual([]);
    client.close();
  });

  it('answers an unexpected failure while reading a request on its id', () => {
    const line = JSON.stringify({ id: 'up', method: 'memcpyHtoD', params: { buffer: 1, data: 'AAAA' } });
    const from = vi.spyOn(Buffer, 'from').mockImplementationOnce(() => { throw new RangeError('unexpected'); });
    let thrown: unknown;
    try {
      parseRequest(line);
    } catch (error) {
      thrown = error;
    } finally {
      from.mockRestore();
    }
    expect(thrown).toMatchObject({ id: 'up' });
    expect(JSON.parse(errorLine((thrown as { id: string }).id, thrown))).toEqual({ id: 'up', error: { code: 'INTERNAL', reason: 'internal error' } });
  });

  it('gives each connection its own session and buffers', async () => {
    const [one, two] = await Promise.all([LineClient.open(path), LineClient.open(path)]);
    const buffer = (await one.call(1, 'malloc', { size: 8 })).result!.buffer;
    expect(await two.call(1, 'memcpyDtoH', { buffer })).toMatchObject({ error: { code: 'INVALID_ARGUMENT' } });
    one.close();
    two.close();
  });

  it('lets the clients of all its connections share one buffer pool, so pooled memory does not grow with connections', async () => {
    const [one, two] = await Promise.all([LineClient.open(path), LineClient.open(path)]);
    const data = Buffer.alloc(200_000, 3).toString('base64');
    for (const client of [one, two]) {
      const buffer = (await client.call(1, 'malloc', { size: 200_000 })).result!.buffer;
      expect(await client.call(2, 'memcpyHtoD', { buffer, data })).toEqual({ id: 2, result: {} });
    }
    type Internals = { pool: BufferPool; connections: Set<{ client?: Promise<{ pool: BufferPool }> }> };
    const internals = server as unknown as Internals;
    const pools = await Promise.all([...internals.connections].map(async (connection) => (await connection.client!).pool));
    expect(pools).toHaveLength(2);
    expect(internals.pool).toBeInstanceOf(BufferPool);
    expect(pools.every((pool) => pool === internals.pool)).toBe(true);
    expect(internals.pool.bytes).toBeLessThanOrEqual(DEFAULT_LIMITS.poolBytes);
    one.close();
    two.close();
  });

  it('is served by `egpu egp` as a process, which replaces a stale socket file', async () => {
    const socket = join(stack.dir, 'egp-cli.sock');
    // A socket file nobody listens on, as an EGP killed with SIGKILL leaves behind.
    const crashed = spawn(process.execPath, ['-e', `require('node:net').createServer().listen(${JSON.stringify(socket)}, () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'ignore'] });
    await new Promise((resolve) => crashed.stdout!.once('data', resolve));
    const gone = new Promise((resolve) => crashed.once('exit', resolve));
    crashed.kill('SIGKILL');
    await gone;
    expect(existsSync(socket)).toBe(true);
    const [node, ...prefix] = egpuCommand();
    const child: ChildProcess = spawn(node, [...prefix, 'egp', '--listen', `unix:${socket}`, '--sgs', stack.sgsAddress, '--nsm-state', join(stack.dir, 'nsm')], { stdio: ['ignore', 'ignore', 'pipe'] });
    try {
      let client: LineClient | undefined;
      for (let i = 0; i < 400 && client === undefined; i++) {
        client = await LineClient.open(socket).catch(() => undefined);
        if (client === undefined) await new Promise((resolve) => setTimeout(resolve, 25));
      }
      if (client === undefined) throw new Error('egpu egp did not listen');
      const buffer = (await client.call(1, 'malloc', { size: 8 })).result!.buffer;
      await client.call(2, 'memcpyHtoD', { buffer, data: f32Bytes([-1, 4]).toString('base64') });
      await client.call(3, 'launchKernel', { kernel: 'relu', args: { input: buffer, out: buffer, count: 2 } });
      expect(f32Values(Buffer.from((await client.call(4, 'memcpyDtoH', { buffer })).result!.data as string, 'base64'))).toEqual([0, 4]);
      client.close();
    } finally {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    }
  });
});
