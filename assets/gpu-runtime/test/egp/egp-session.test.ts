/**
 * The EGP client against real `egpu sgs` and `egpu context` processes: a session's CUDA-shaped
 * calls, pipelined; refusals that fail one call and leave the session going; an enclave SGS
 * does not admit; a hostile record to either process refused without harm; and the
 * kernel-attestation log naming the code each launch ran.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EgpClient } from '../../src/egp/client';
import { SIMULATED_ENCLAVE_PCRS, simulatedEnclave } from '../../src/egp/local-enclave';
import { LocalStack, startLocalStack } from '../../src/egp/local-stack';
import { BUILTIN_KERNELS } from '../../src/kernels/builtins';
import { decodeControl } from '../../src/protocol/control';
import { CborValue, encodeCbor } from '../../../../lib/shared/cbor';
import { connect, f32Bytes, f32Values, rejection } from './helpers';

describe('EGP session over SGS and an execution context', () => {
  let stack: LocalStack;
  let gpu: EgpClient;

  beforeAll(async () => {
    stack = await startLocalStack();
    gpu = await connect(stack);
  });

  afterAll(async () => {
    gpu?.close();
    await stack?.stop();
  });

  it('runs malloc, memcpyHtoD, launchKernel(add), memcpyDtoH and free', async () => {
    const [a, b, out] = await Promise.all([gpu.malloc(16), gpu.malloc(16), gpu.malloc(16)]);
    await gpu.memcpyHtoD(a, f32Bytes([1, 2, 3, 4]));
    await gpu.memcpyHtoD(b, f32Bytes([10, 20, 30, 40.5]));
    const launched = await gpu.launchKernel('add', { a, b, out, count: 4 });
    expect(launched.codeSha384.equals(BUILTIN_KERNELS.add.digest)).toBe(true);
    expect(f32Values(await gpu.memcpyDtoH(out))).toEqual([11, 22, 33, 44.5]);
    await Promise.all([gpu.free(a), gpu.free(b), gpu.free(out)]);
  });

  it('pipelines calls in order without awaiting each (a CUDA stream)', async () => {
    const x = await gpu.malloc(4 * 3);
    const y = await gpu.malloc(4 * 3);
    const calls: Promise<unknown>[] = [];
    const reads: Promise<Buffer>[] = [];
    for (let i = 0; i < 20; i++) {
      calls.push(gpu.memcpyHtoD(x, f32Bytes([i, -i - 1, i - 10])));
      calls.push(gpu.launchKernel('relu', { input: x, out: y, count: 3 }));
      reads.push(gpu.memcpyDtoH(y));
    }
    await gpu.synchronize();
    const results = await Promise.all(reads);
    results.forEach((bytes, i) => expect(f32Values(bytes)).toEqual([i, 0, Math.max(i - 10, 0)]));
    await Promise.all(calls);
  });

  it('fails one call with the context\'s code and keeps the session', async () => {
    const small = await gpu.malloc(4);
    const failure = await rejection(() => gpu.launchKernel('add', { a: small, b: small, out: small, count: 2 }), 'OPERATION_FAILED');
    expect(failure).toMatchObject({ remote: 'BAD_ARGS' });
    const mismatch = await rejection(() => gpu.launchKernel('relu', { input: small, out: small, count: 1 }, { digest: createHash('sha384').update('not relu').digest() }), 'OPERATION_FAILED');
    expect(mismatch).toMatchObject({ remote: 'DIGEST_MISMATCH' });
    await gpu.memcpyHtoD(small, f32Bytes([-2]));
    await gpu.launchKernel('relu', { input: small, out: small, count: 1 });
    expect(f32Values(await gpu.memcpyDtoH(small))).toEqual([0]);
  });

  it('refuses a launch whose descriptor is beyond the limit (TOO_LARGE) and keeps the session', async () => {
    const names = Array.from({ length: 1000 }, (_, i) => `input-${i}`.padEnd(64, 'x'));
    await rejection(() => gpu.launchKernel('relu', { input: 1, out: 1, count: 0, names }), 'TOO_LARGE');
    const v = await gpu.malloc(4);
    await gpu.memcpyHtoD(v, f32Bytes([3]));
    expect(f32Values(await gpu.memcpyDtoH(v))).toEqual([3]);
  });

  it('refuses calls on buffers it never allocated, before anything is sent', async () => {
    await rejection(() => gpu.memcpyDtoH(999_999), 'INVALID_ARGUMENT');
    await rejection(() => gpu.launchKernel('no-such-kernel', {}), 'INVALID_ARGUMENT');
    await rejection(() => gpu.launchKernel('onnx.run', { model: 1 }), 'INVALID_ARGUMENT');
  });

  it('refuses an enclave whose PCRs are not in the allowlist, without retrying', async () => {
    const otherImage = simulatedEnclave(stack.nsm, [SIMULATED_ENCLAVE_PCRS[1], SIMULATED_ENCLAVE_PCRS[0], SIMULATED_ENCLAVE_PCRS[2]]);
    const error = await rejection(() => connect(stack, { enclave: otherImage }), 'UNAUTHORIZED');
    expect(error.reason).toMatch(/allowlist/);
  });

  // Any enclave can send SGS a record before it is attested, and whatever reaches the
  // context's socket can send it one: a refusal quoting a long field once killed both.
  it('SGS and the context refuse a record whose refusal would quote 36 KB, and go on serving', async () => {
    const body = encodeCbor(new Map<CborValue, CborValue>([['t', 'open'], ['\u0001'.repeat(6000), 1]]));
    const record = Buffer.concat([Buffer.from([0, 0, body.length >> 8, body.length & 0xff]), body]);
    for (const address of [stack.sgsAddress, stack.contextAddress]) {
      const answer = await new Promise<Buffer>((resolve) => {
        const chunks: Buffer[] = [];
        const socket = netConnect(address.replace(/^unix:/, ''), () => socket.write(record));
        socket.on('data', (chunk) => chunks.push(chunk));
        socket.on('close', () => resolve(Buffer.concat(chunks)));
      });
      expect(decodeControl(answer)).toMatchObject({ t: 'error', code: 'MALFORMED' });
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect([stack.sgs.exitCode, stack.context.exitCode]).toEqual([null, null]);
    const buffer = await gpu.malloc(4);
    await gpu.memcpyHtoD(buffer, f32Bytes([7]));
    expect(f32Values(await gpu.memcpyDtoH(buffer))).toEqual([7]);
    await gpu.free(buffer);
  });

  it('each launch appears in the kernel-attestation log with the code it ran', async () => {
    const v = await gpu.malloc(8);
    await gpu.memcpyHtoD(v, f32Bytes([1, 2]));
    await gpu.launchKernel('softmax', { input: v, out: v, rows: 1, cols: 2 });
    const [p0, p1] = f32Values(await gpu.memcpyDtoH(v));
    expect(p0 + p1).toBeCloseTo(1, 6);
    expect(p1).toBeGreaterThan(p0);
    // SGS appends the record through a write stream after the launch completes: wait for it to land.
    const softmaxDigest = BUILTIN_KERNELS.softmax.digest.toString('hex');
    const logged = () => {
      const text = existsSync(stack.kernelLogPath) ? readFileSync(stack.kernelLogPath, 'utf8') : '';
      return text.split('\n').filter(Boolean).map((line) => JSON.parse(line) as { kernel: string; codeSha384: string })
        .some((r) => r.kernel === 'softmax' && r.codeSha384 === softmaxDigest);
    };
    for (let i = 0; i < 200 && !logged(); i++) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(logged()).toBe(true);
  });
});
