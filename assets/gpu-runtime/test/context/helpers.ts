/**
 * Shared by the context tests: an enclave (the simulated NSM with an image's PCRs), a
 * context listening on a Unix socket in a temporary directory, and a client that plays SGS
 * and the EGP at once over that socket: it relays the handshake, seals requests under the
 * session's keys and opens the sealed answers.
 */
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ENCLAVE_TO_HOST, HOST_TO_ENCLAVE } from '../../src/abe/frame-header';
import { sealBuffer } from '../../src/abe/frame';
import { Attester, EnclaveIdentity, answerHello } from '../../src/abe/handshake';
import { decodeContextHello, encodeEnclaveReply } from '../../src/abe/handshake-messages';
import { ImagePcrs } from '../../src/abe/key-schedule';
import { AbeSession } from '../../src/abe/session';
import { SimulatedNsm } from '../../src/attestation/simulated-nsm';
import type { CborValue } from '../../../../lib/shared/cbor';
import * as ort from 'onnxruntime-node';
import { ExecutionContext, ExecutionContextOptions } from '../../src/context/execution-context';
import { OnnxSettings, onnxSessionOptions } from '../../src/kernels/onnx-runtime';
import { DataType, encodeModel, floatTensor, int64Tensor } from '../../src/onnx/onnx-writer';
import { noCodeDigest } from '../../src/kernels/registry';
import { KernelCaller, imageOf } from '../../src/kernels/kernel';
import { ControlMessage } from '../../src/protocol/control';
import { DESCRIPTOR_BUFFER, OperationRequest, OperationResult, decodeResult, encodeRequest } from '../../src/protocol/op-descriptor';
import { RecordConnection } from '../../src/protocol/record-connection';
import { Address, connect } from '../../src/protocol/transport';
import { WireError } from '../../src/protocol/wire-error';

export function sha384(data: string | Uint8Array): Buffer {
  return createHash('sha384').update(data).digest();
}

/** An enclave image: its PCRs, and a simulated NSM that attests them. */
export class TestEnclave {
  readonly nsm: SimulatedNsm;
  readonly pcrs: ImagePcrs;

  constructor(nsm = SimulatedNsm.create(), name = 'image') {
    this.nsm = nsm;
    this.pcrs = [sha384(`${name}-0`), sha384(`${name}-1`), sha384(`${name}-2`)];
  }

  /** The PCR allowlist a context pins for this image. */
  get expectedPcrs(): Record<number, string> {
    return { 0: this.pcrs[0].toString('hex'), 1: this.pcrs[1].toString('hex'), 2: this.pcrs[2].toString('hex') };
  }

  identity(attestedPcrs: ImagePcrs = this.pcrs): EnclaveIdentity {
    const attester: Attester = {
      attest: (request) => this.nsm.attest({ pcrs: { 0: attestedPcrs[0], 1: attestedPcrs[1], 2: attestedPcrs[2] }, userData: request.userData, nonce: request.nonce }),
    };
    return { attester, pcrs: this.pcrs };
  }
}

/** A temporary directory for sockets; removed by the returned cleanup. */
export function socketDir(): { dir: string; path: (name: string) => string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'egpu-ctx-'));
  return { dir, path: (name) => join(dir, name), remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A context on a fresh Unix socket, pinned to `enclave`'s simulated root and PCRs. */
export async function startContext(enclave: TestEnclave, options: Partial<ExecutionContextOptions> = {}): Promise<{ context: ExecutionContext; stop: () => Promise<void> }> {
  const sockets = socketDir();
  const context = await ExecutionContext.start({
    listen: `unix:${sockets.path('context.sock')}`,
    root: enclave.nsm.rootCertificate,
    expectedPcrs: enclave.expectedPcrs,
    onnxProvider: 'cpu',
    ...options,
  });
  return { context, stop: async () => { await context.close(); sockets.remove(); } };
}

/**
 * A context for a test file: started before its tests, closed after them, with a way to open
 * a session on it for `enclave`.
 */
export function contextForTests(enclave: TestEnclave, options: Partial<ExecutionContextOptions> = {}): { readonly context: ExecutionContext; openSession(): Promise<TestClient> } {
  let started: Awaited<ReturnType<typeof startContext>> | undefined;
  beforeAll(async () => { started = await startContext(enclave, options); });
  afterAll(() => started?.stop());
  return {
    get context() {
      return started!.context;
    },
    openSession: () => TestClient.open(started!.context.address, enclave.identity()),
  };
}

export type TestRecord = { frame: Buffer } | { control: ControlMessage } | { closed: WireError | undefined };

/** The answer to one operation, opened. */
export interface Answer {
  readonly result: OperationResult;
  readonly data?: Buffer;
  readonly done: Extract<ControlMessage, { t: 'done' }>;
}

/** Plays SGS and the EGP over one connection to the context. */
export class TestClient {
  static async connect(address: Address): Promise<TestClient> {
    return new TestClient(await connect(address));
  }

  /** Connected, with the session set up for `identity`. */
  static async open(address: Address, identity: EnclaveIdentity): Promise<TestClient> {
    const client = await TestClient.connect(address);
    await client.handshake(identity);
    return client;
  }

  readonly connection: RecordConnection;
  session?: AbeSession;
  /** The next operation number to use. */
  n = 1;
  private readonly records: TestRecord[] = [];
  private waiter?: () => void;
  private closedWith?: { error: WireError | undefined };

  private constructor(socket: import('node:net').Socket) {
    this.connection = new RecordConnection(socket, {
      onFrame: (frame) => this.push({ frame }),
      onControl: (control) => this.push({ control }),
      onClose: (error) => {
        this.closedWith = { error };
        this.push({ closed: error });
      },
    });
  }

  get isClosed(): boolean {
    return this.closedWith !== undefined;
  }

  /** The next record, or {closed} once the connection ended. */
  async next(): Promise<TestRecord> {
    while (this.records.length === 0) {
      if (this.closedWith) return { closed: this.closedWith.error };
      await new Promise<void>((resolve) => { this.waiter = resolve; });
    }
    return this.records.shift()!;
  }

  async nextControl(): Promise<ControlMessage> {
    const record = await this.next();
    if (!('control' in record)) throw new Error(`expected a control message, got ${describe(record)}`);
    return record.control;
  }

  /** Waits for the context's error message (if any) and the close; returns the error's code. */
  async refusal(): Promise<{ code?: string; n?: number; reason?: string; closed: true }> {
    let code: string | undefined;
    let n: number | undefined;
    let reason: string | undefined;
    for (;;) {
      const record = await this.next();
      if ('closed' in record) return { code, n, reason, closed: true };
      if ('control' in record && record.control.t === 'error') ({ code, n, reason } = record.control);
    }
  }

  /** The handshake, relayed as SGS would: hello-request, hello, reply, ready. */
  async handshake(identity: EnclaveIdentity): Promise<AbeSession> {
    await this.connection.sendControl({ t: 'hello-request' });
    const hello = await this.nextControl();
    if (hello.t !== 'hello') throw new Error(`expected hello, got ${hello.t}`);
    const { reply, session } = await answerHello(decodeContextHello(hello.hello), identity);
    await this.connection.sendControl({ t: 'reply', reply: encodeEnclaveReply(reply) });
    const ready = await this.nextControl();
    if (ready.t !== 'ready') throw new Error(`expected ready, got ${JSON.stringify(ready)}`);
    if (!ready.session.equals(session.sessionId)) throw new Error('ready names another session');
    this.session = session;
    return session;
  }

  /** The frames of an operation: its request (chunk 0) and, for htod, its data. */
  frames(request: OperationRequest | Buffer, options: { digest?: Buffer; data?: Buffer; n?: number } = {}): { n: number; digest: Buffer; frames: Buffer[] } {
    const n = options.n ?? this.n++;
    const digest = options.digest ?? noCodeDigest();
    const sealer = this.session!.sealer(n, ENCLAVE_TO_HOST, digest);
    const descriptor = Buffer.isBuffer(request) ? request : encodeRequest(request);
    const frames = [sealer.seal(DESCRIPTOR_BUFFER, descriptor, options.data === undefined)];
    if (options.data !== undefined) {
      const target = !Buffer.isBuffer(request) && 'buffer' in request ? request.buffer : 1;
      frames.push(...sealBuffer(sealer, target, options.data, true));
    }
    return { n, digest, frames };
  }

  /** Sends an operation without waiting for its answer (pipelining); returns what receive() needs. */
  async send(request: OperationRequest | Buffer, options: { digest?: Buffer; data?: Buffer } = {}): Promise<{ n: number; digest: Buffer }> {
    const { n, digest, frames } = this.frames(request, options);
    for (const frame of frames) await this.connection.send(frame);
    return { n, digest };
  }

  /** Reads and opens the answer to operation n: the result, dtoh's data, and the done message. */
  async receive(n: number, digest: Buffer): Promise<Answer> {
    const opener = this.session!.opener(n, HOST_TO_ENCLAVE, digest);
    const first = await this.next();
    if (!('frame' in first)) throw new Error(`expected the result of operation ${n}, got ${describe(first)}`);
    let chunk = opener.open(first.frame);
    const result = decodeResult(Buffer.from(chunk.plaintext));
    const parts: Buffer[] = [];
    while (!chunk.last) {
      const record = await this.next();
      if (!('frame' in record)) throw new Error(`expected a data chunk of operation ${n}, got ${describe(record)}`);
      chunk = opener.open(record.frame);
      parts.push(Buffer.from(chunk.plaintext));
    }
    const done = await this.nextControl();
    if (done.t !== 'done' || done.n !== n) throw new Error(`expected done for operation ${n}, got ${JSON.stringify(done)}`);
    return { result, data: result.ok && result.size !== undefined ? Buffer.concat(parts) : undefined, done };
  }

  async call(request: OperationRequest | Buffer, options: { digest?: Buffer; data?: Buffer } = {}): Promise<Answer> {
    const { n, digest } = await this.send(request, options);
    return this.receive(n, digest);
  }

  close(): void {
    this.connection.close();
  }

  private push(record: TestRecord): void {
    if (!('closed' in record)) this.records.push(record);
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.();
  }
}

/** f32 values as the little-endian bytes a buffer holds. */
export function f32Bytes(values: ArrayLike<number>): Buffer {
  const array = Float32Array.from(values);
  return Buffer.from(array.buffer, array.byteOffset, array.byteLength);
}

export function f32Values(bytes: Buffer): Float32Array {
  const copy = Buffer.from(bytes);
  return new Float32Array(copy.buffer, copy.byteOffset, copy.length / 4);
}

/**
 * A model that runs as long as asked: y = x·w·w·...·w, `layers` products of side x side f32
 * matrices (2·side³ flops each), w random with entries up to about sqrt(3/side), which keeps
 * the values near their size: neither overflowing nor going subnormal.
 */
export function matMulChain(layers: number, side: number): Buffer {
  const scale = 1.7 / Math.sqrt(side);
  const nodes = Array.from({ length: layers }, (_, i) => ({ opType: 'MatMul', inputs: [i === 0 ? 'x' : `h${i}`, 'w'], outputs: [i === layers - 1 ? 'y' : `h${i + 1}`] }));
  return encodeModel({
    irVersion: 8,
    opsetImports: [{ version: 17 }],
    producerName: 'egpu-test',
    graph: {
      name: 'chain',
      nodes,
      inputs: [{ name: 'x', elemType: DataType.FLOAT, shape: [side, side] }],
      outputs: [{ name: 'y', elemType: DataType.FLOAT, shape: [side, side] }],
      initializers: [floatTensor('w', [side, side], randomF32(side * side, scale))],
    },
  });
}

/** Output `y`'s bytes when onnxruntime runs `model` on input `x` in this process with `settings` (what onnx.run must answer). */
export async function directRun(model: Buffer, input: Float32Array, shape: number[], settings: OnnxSettings): Promise<Buffer> {
  const direct = await ort.InferenceSession.create(model, onnxSessionOptions(settings));
  try {
    return f32Bytes((await direct.run({ x: new ort.Tensor('float32', input, shape) })).y.data as Float32Array);
  } finally {
    await direct.release();
  }
}

/**
 * Uploads an ONNX model (buffer 1) and one f32 input `x` (buffer 2), allocates the output
 * (buffer 3, sized by the run), and returns the args of an onnx.run of them with output `y`.
 */
export async function uploadOnnxRun(client: TestClient, model: Buffer, input: Float32Array, shape: number[]): Promise<Map<string, CborValue>> {
  await client.call({ op: 'malloc', buffer: 1, size: model.length });
  await client.call({ op: 'htod', buffer: 1, size: model.length }, { data: model });
  await client.call({ op: 'malloc', buffer: 2, size: input.byteLength });
  await client.call({ op: 'htod', buffer: 2, size: input.byteLength }, { data: f32Bytes(input) });
  await client.call({ op: 'malloc', buffer: 3, size: 0 });
  return new Map<string, CborValue>(Object.entries({
    model: 1, inputNames: ['x'], inputBuffers: [2], inputShapes: [shape], outputNames: ['y'], outputBuffers: [3],
  }));
}

export function randomF32(count: number, scale = 1): Float32Array {
  const bytes = randomBytes(4 * count);
  const values = new Float32Array(count);
  for (let i = 0; i < count; i++) values[i] = ((bytes.readUInt32LE(4 * i) / 0xffff_ffff) * 2 - 1) * scale;
  return values;
}

function describe(record: TestRecord): string {
  if ('frame' in record) return 'a frame';
  if ('control' in record) return JSON.stringify(record.control, (_k, v: unknown) => (v && typeof v === 'object' && 'type' in v && (v as { type: string }).type === 'Buffer' ? '<bytes>' : v));
  return `the close (${record.closed?.code ?? 'clean'})`;
}

/** Two enclave images, as kernels see their callers (imageOf their PCR0-2). */
export const IMAGE_A = imageOf({ 0: 'a0'.repeat(48), 1: 'a1'.repeat(48), 2: 'a2'.repeat(48) });
export const IMAGE_B = imageOf({ 0: 'b0'.repeat(48), 1: 'a1'.repeat(48), 2: 'a2'.repeat(48) });
export const CALLER: KernelCaller = { image: IMAGE_A };

/** y = the sum of x: [1] expanded to `elements` floats: a model whose run needs 4·elements bytes of intermediate tensor. */
export function expandingModel(elements: number): Buffer {
  return encodeModel({
    irVersion: 8,
    opsetImports: [{ version: 17 }],
    graph: {
      name: 'expanding',
      nodes: [
        { opType: 'Expand', inputs: ['x', 'shape'], outputs: ['big'] },
        { opType: 'ReduceSum', inputs: ['big'], outputs: ['y'], attributes: [{ name: 'keepdims', type: 'int', value: 0 }] },
      ],
      inputs: [{ name: 'x', elemType: DataType.FLOAT, shape: [1] }],
      outputs: [{ name: 'y', elemType: DataType.FLOAT, shape: [] }],
      initializers: [int64Tensor('shape', [1], [elements])],
    },
  });
}
