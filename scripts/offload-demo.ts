/**
 * The demo's second part: the whole offload path, locally. `egpu sgs` and `egpu context` run
 * as child processes (simulated NSM root pinned, the simulated enclave's PCRs allowlisted);
 * an enclave-side application in this process uploads a ResNet-50 (our own seeded weights)
 * through the EGP client and runs requests, each output checked byte for byte against
 * onnxruntime run directly here with the context's session options. Prints the latency
 * breakdown; returns 1 on any mismatch or error.
 */
import * as path from 'node:path';
import { startLocalStack } from '../assets/gpu-runtime/src/egp/local-stack';
import { ensureResnet50 } from './build-resnet50';
import { BREAKDOWN, RequestSample, ResnetOffload, percentiles } from './resnet-offload';

const WARMUP_REQUESTS = 2;
const REQUESTS = 20;

const ms = (us: number) => `${(us / 1000).toFixed(3)} ms`.padStart(11);

export async function runOffloadDemo(): Promise<number> {
  console.log('\n== Offload, locally: EGP (this process) -> SGS -> execution context, sealed end to end ==');
  const modelStart = Date.now();
  const model = ensureResnet50();
  console.log(`ResNet-50 (seeded weights): ${path.relative(process.cwd(), model.path)}, ${(model.bytes.length / 1e6).toFixed(1)} MB, ${model.cached ? 'cached' : `built in ${Date.now() - modelStart} ms`}`);
  console.log(`  SHA-384 ${model.sha384.toString('hex')}`);

  const stack = await startLocalStack();
  console.log(`Started egpu sgs (pid ${stack.sgs.pid}) and egpu context (pid ${stack.context.pid}) on Unix sockets in ${stack.dir}`);
  console.log(`  simulated NSM root pinned by both; allowlist = the simulated enclave's PCR0-2`);
  let offload: ResnetOffload | undefined;
  const failures: string[] = [];
  const samples: RequestSample[] = [];
  let kernelLog = '';
  try {
    offload = await ResnetOffload.prepare(stack, model.bytes);
    console.log(`Session established (attested handshake); model uploaded sealed in ${ms(offload.uploadUs).trim()}`);
    for (let i = 0; i < WARMUP_REQUESTS; i++) {
      const sample = await offload.request(); // the first builds the context's onnxruntime session
      if (!sample.identical) failures.push(`warm-up request ${i + 1}: output differs from direct onnxruntime`);
    }
    for (let i = 0; i < REQUESTS; i++) {
      const sample = await offload.request();
      samples.push(sample);
      if (!sample.identical) failures.push(`request ${i + 1}: output differs from direct onnxruntime`);
    }
  } catch (error) {
    failures.push(`offload failed: ${error instanceof Error ? error.message : String(error)}`);
  } finally {
    await offload?.close();
    kernelLog = (await stack.stop()).kernelLog;
  }

  if (samples.length > 0) {
    const identical = samples.filter((s) => s.identical).length;
    console.log(`\n${samples.length} requests (1x3x224x224 f32 in, 1000 logits out; after ${WARMUP_REQUESTS} warm-up): ${identical}/${samples.length} outputs bit-identical to direct onnxruntime`);
    console.log(`\nLatency breakdown per request   ${'p50'.padStart(11)} ${'p99'.padStart(11)}`);
    for (const part of BREAKDOWN) {
      const { p50, p99 } = percentiles(samples, `${part}Us`);
      console.log(`  ${part.padEnd(30)}${ms(p50)} ${ms(p99)}`);
    }
    const rows: Array<[string, keyof Omit<RequestSample, 'identical'>]> = [
      ['end to end (app, offloaded)', 'e2eUs'], ['overhead (end to end - compute)', 'overheadUs'], ['direct onnxruntime, same process', 'directUs'],
    ];
    for (const [label, key] of rows) {
      const { p50, p99 } = percentiles(samples, key);
      console.log(`  ${label.padEnd(30)}${ms(p50)} ${ms(p99)}`);
    }
    console.log('  (seal/open: in this process; compute: the context\'s onnxruntime run; queue: waiting in SGS; transport: the rest)');
  }

  const launches = kernelLogLaunches(kernelLog, model.sha384.toString('hex'));
  console.log(`\nSGS kernel-attestation log: ${launches.total} onnx.run launch record(s), ${launches.matching} naming the uploaded model's SHA-384`);
  if (launches.total < samples.length + WARMUP_REQUESTS || launches.matching !== launches.total) {
    failures.push('the kernel-attestation log does not show every launch running the uploaded model');
  }
  if (failures.length > 0) {
    console.error(`\nFAILED (offload): ${failures.join('; ')}`);
    return 1;
  }
  console.log('\nOK: offloaded outputs are identical to direct onnxruntime; nothing but ciphertext crossed SGS');
  return 0;
}

/** Counts SGS's kernel-attestation records for onnx.run (as flushed when SGS stopped). */
function kernelLogLaunches(text: string, modelSha384: string): { total: number; matching: number } {
  const records = text.split('\n').filter(Boolean).map((line) => JSON.parse(line) as { kernel: string; codeSha384: string }).filter((r) => r.kernel === 'onnx.run');
  return { total: records.length, matching: records.filter((r) => r.codeSha384 === modelSha384).length };
}
