/**
 * The bare path: what the offload's topology costs before any of the offload runs. The same
 * ResNet-50 requests as the resnet50 benchmark, with the same three processes in the same
 * places, and nothing else:
 *
 *   this process --unix--> relay --unix--> bare context (bare-context.ts: onnxruntime, same options)
 *                <--------       <--------
 *
 * The input leaves in writes of the EGP's chunk size; the relay (SGS's place) forwards
 * bytes as they arrive, without reading them; the bare context copies them into one buffer,
 * runs the model and answers the logits with its computeUs. No sealing, no opening, no
 * frames, no handshake, no scheduling. Its overhead (end to end minus computeUs, the
 * resnet50 benchmark's definition) is what the sockets and the processes' wake-ups between
 * inferences cost on this machine: the part of the offload's overhead that no change to its
 * protocol or crypto can remove. The same requests also go straight to the bare context
 * (oneLink): the floor for any design that runs the model in another process, and, when the
 * native floor's program is built, through a relay written in C in SGS's place
 * (nativeRelayed). Each request
 * is followed by a direct run in this process, as in the resnet50 benchmark, so both see
 * the same caches.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { DEFAULT_CHUNK_BYTES } from '../assets/gpu-runtime/src/egp/client';
import { nowUs, quantile } from '../assets/gpu-runtime/src/egp/timing';
import { RESNET50_INPUT, RESNET50_INPUT_ELEMENTS, RESNET50_OUTPUT, SeededRandom, referenceSession } from '../scripts/build-resnet50';
import { RELAY_SOURCE, connectUnix, startProcess } from './plain-processes';

export interface BarePathReport {
  /** Requests on each route. */
  readonly requests: number;
  /** Through the relay: the offload's three processes and two links. */
  readonly relayed: BareOverhead;
  /** Straight to the bare context: two processes, one link, the least any offload to another process needs. */
  readonly oneLink: BareOverhead;
  /**
   * Through the relay written in C (bench/native-floor.c --relay) instead: what SGS's place
   * costs on this path when it is not a Node process. Absent when the C program could not be
   * built (the native floor's report says why).
   */
  readonly nativeRelayed?: BareOverhead;
  /** Outputs byte-identical to a direct run of the same input, over all routes (the bare path did run the model). */
  readonly identical: number;
  /** Requests on all routes together: what `identical` is out of. */
  readonly outputs: number;
}

/** p50 and p99 of end to end minus the bare context's computeUs (ms). */
export interface BareOverhead {
  readonly overheadMs: number;
  readonly overheadP99Ms: number;
}

const REPLY_HEADER_BYTES = 4 + 8;

/** @param nativeRelay the compiled bench/native-floor.c, to measure the nativeRelayed route too */
export async function measureBarePath(modelPath: string, requests: number, warmup: number, nativeRelay?: string): Promise<BarePathReport> {
  const dir = mkdtempSync(join(tmpdir(), 'egpu-bare-'));
  const contextSocket = join(dir, 'context.sock');
  const relaySocket = join(dir, 'relay.sock');
  const nativeRelaySocket = join(dir, 'native-relay.sock');
  const loader = pathToFileURL(require.resolve('tsx')).href;
  const children: ChildProcess[] = [];
  let socket: net.Socket | undefined;
  try {
    children.push(await startProcess(['--import', loader, join(__dirname, 'bare-context.ts'), contextSocket, modelPath]));
    children.push(await startProcess(['-e', RELAY_SOURCE, relaySocket, contextSocket]));
    if (nativeRelay !== undefined) children.push(await startProcess(['--relay', nativeRelaySocket, contextSocket], nativeRelay));
    const { ort, session: direct } = await referenceSession(modelPath);
    const random = new SeededRandom(2024);
    let identical = 0;
    const route = async (path: string): Promise<BareOverhead> => {
      socket = await connectUnix(path);
      const overheads: number[] = [];
      for (let i = 0; i < warmup + requests; i++) {
        const input = random.uniform(RESNET50_INPUT_ELEMENTS, 1);
        const bytes = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
        const start = nowUs();
        const reply = await roundTrip(socket, bytes);
        const e2eUs = nowUs() - start;
        const computeUs = reply.readDoubleLE(4);
        const results = await direct.run({ [RESNET50_INPUT.name]: new ort.Tensor('float32', input, [...RESNET50_INPUT.dims]) });
        if (i < warmup) continue;
        overheads.push(e2eUs - computeUs);
        const expected = results[RESNET50_OUTPUT.name].data as Float32Array;
        if (reply.subarray(REPLY_HEADER_BYTES).equals(Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength))) identical++;
      }
      socket.destroy();
      const ms = (us: number) => Math.round(us) / 1000;
      return { overheadMs: ms(quantile(overheads, 0.5)), overheadP99Ms: ms(quantile(overheads, 0.99)) };
    };
    try {
      const relayed = await route(relaySocket);
      const oneLink = await route(contextSocket);
      const nativeRelayed = nativeRelay === undefined ? undefined : await route(nativeRelaySocket);
      return { requests, relayed, oneLink, nativeRelayed, identical, outputs: requests * (nativeRelay === undefined ? 2 : 3) };
    } finally {
      await direct.release();
    }
  } finally {
    socket?.destroy();
    for (const child of children) child.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Sends one request in chunk-sized writes; resolves to the whole reply, length prefix included. */
function roundTrip(socket: net.Socket, input: Buffer): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let received = 0;
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      received += chunk.length;
      if (received < 4 || received < 4 + Buffer.concat(chunks).readUInt32BE(0)) return;
      socket.off('data', onData);
      resolve(Buffer.concat(chunks, received));
    };
    socket.on('data', onData);
    const length = Buffer.alloc(4);
    length.writeUInt32BE(input.length, 0);
    socket.write(length);
    for (let offset = 0; offset < input.length; offset += DEFAULT_CHUNK_BYTES) {
      socket.write(input.subarray(offset, Math.min(input.length, offset + DEFAULT_CHUNK_BYTES)));
    }
  });
}
