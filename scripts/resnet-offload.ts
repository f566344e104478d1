/**
 * ResNet-50 requests through the whole offload path, each checked against onnxruntime run
 * directly in this process with the context's own session options: what `npm run demo`
 * shows and `npm run bench` measures.
 *
 * One request = three pipelined EGP calls: memcpyHtoD(input), launchKernel('onnx.run'),
 * memcpyDtoH(logits). Its latency breakdown (microseconds):
 *
 *   seal       sealing the three calls' frames in the enclave
 *   open       opening their result frames in the enclave
 *   compute    the context's computeUs (onnxruntime's run of the model)
 *   queue      SGS's queueUs (time the calls waited for a slot at the context)
 *   transport  everything else of the end-to-end time: the links, SGS relaying, the context
 *              opening, copying and sealing, and the event loops in between
 *   overhead   end-to-end minus compute: everything the offload adds
 */
import type { InferenceSession, Tensor } from 'onnxruntime-node';
import { EgpClient, LaunchResult } from '../assets/gpu-runtime/src/egp/client';
import type { LocalStack } from '../assets/gpu-runtime/src/egp/local-stack';
import { OperationTiming, nowUs, quantile } from '../assets/gpu-runtime/src/egp/timing';
import { RESNET50_INPUT, RESNET50_INPUT_ELEMENTS, RESNET50_OUTPUT, SeededRandom, referenceSession } from './build-resnet50';

export interface RequestSample {
  readonly e2eUs: number;
  readonly sealUs: number;
  readonly transportUs: number;
  readonly queueUs: number;
  readonly computeUs: number;
  readonly openUs: number;
  readonly overheadUs: number;
  /** The same input run directly with onnxruntime in this process. */
  readonly directUs: number;
  /** Offloaded logits byte-identical to the direct run's. */
  readonly identical: boolean;
}

export const BREAKDOWN = ['seal', 'transport', 'queue', 'compute', 'open'] as const;


export class ResnetOffload {
  /** Uploads the model through `client` and builds the direct reference session. */
  static async prepare(stack: LocalStack, model: Buffer, options: { chunkBytes?: number } = {}): Promise<ResnetOffload> {
    const timings: OperationTiming[] = [];
    const client = await EgpClient.connect({
      sgs: stack.sgsAddress,
      enclave: stack.enclave,
      limits: options.chunkBytes ? { chunkBytes: options.chunkBytes } : undefined,
      observer: { operation: (event) => timings.push(event.timing) },
    });
    const { ort, session: direct } = await referenceSession(model);
    const modelBuffer = await client.malloc(model.length);
    const inputBuffer = await client.malloc(RESNET50_INPUT_ELEMENTS * 4);
    const outputBuffer = await client.malloc(0); // onnx.run sizes it to the output
    const uploadStart = nowUs();
    await client.memcpyHtoD(modelBuffer, model);
    const uploadUs = nowUs() - uploadStart;
    return new ResnetOffload(client, direct, ort.Tensor, timings, { model: modelBuffer, input: inputBuffer, output: outputBuffer }, uploadUs);
  }

  private readonly random = new SeededRandom(2024);

  private constructor(
    readonly client: EgpClient,
    private readonly direct: InferenceSession,
    private readonly TensorClass: typeof Tensor,
    private readonly timings: OperationTiming[],
    private readonly buffers: { model: number; input: number; output: number },
    /** How long uploading the model took (microseconds). */
    readonly uploadUs: number,
  ) {}

  /** A fresh random input (seeded, so runs are reproducible), offloaded, then run directly and compared. */
  async request(): Promise<RequestSample> {
    const input = this.random.uniform(RESNET50_INPUT_ELEMENTS, 1);
    const mark = this.timings.length;
    const { launched, logits, e2eUs } = await this.offload(input);
    const ops = this.timings.slice(mark);
    const sum = (key: keyof OperationTiming) => ops.reduce((total, t) => total + t[key], 0);
    const computeUs = launched.computeUs;
    const queueUs = sum('queueUs');
    const sealUs = sum('sealUs');
    const openUs = sum('openUs');

    const directStart = nowUs();
    const results = await this.direct.run({ [RESNET50_INPUT.name]: new this.TensorClass('float32', input, [...RESNET50_INPUT.dims]) });
    const directUs = nowUs() - directStart;
    const expected = results[RESNET50_OUTPUT.name].data as Float32Array;
    const expectedBytes = Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength);
    return {
      e2eUs,
      sealUs,
      openUs,
      computeUs,
      queueUs,
      transportUs: Math.max(0, e2eUs - sealUs - openUs - computeUs - queueUs),
      overheadUs: e2eUs - computeUs,
      directUs,
      identical: logits.equals(expectedBytes),
    };
  }

  /** `requests` requests after `warmup` unrecorded ones. */
  async samples(requests: number, warmup: number): Promise<RequestSample[]> {
    for (let i = 0; i < warmup; i++) await this.request();
    const samples: RequestSample[] = [];
    for (let i = 0; i < requests; i++) samples.push(await this.request());
    return samples;
  }

  /** A fresh random input offloaded, with no direct run to compare (load for other measurements). */
  async offloadOnly(): Promise<void> {
    await this.offload(this.random.uniform(RESNET50_INPUT_ELEMENTS, 1));
  }

  private async offload(input: Float32Array): Promise<{ launched: LaunchResult; logits: Buffer; e2eUs: number }> {
    const inputBytes = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
    const { client, buffers } = this;
    const start = nowUs();
    // Pipelined: all three calls are sent before the first answer, as a CUDA stream would.
    const upload = client.memcpyHtoD(buffers.input, inputBytes);
    const launch = client.launchKernel('onnx.run', {
      model: buffers.model,
      inputNames: [RESNET50_INPUT.name],
      inputBuffers: [buffers.input],
      inputShapes: [[...RESNET50_INPUT.dims]],
      outputNames: [RESNET50_OUTPUT.name],
      outputBuffers: [buffers.output],
    });
    const download = client.memcpyDtoH(buffers.output);
    const [, launched, logits] = await Promise.all([upload, launch, download]);
    return { launched, logits, e2eUs: nowUs() - start };
  }

  async close(): Promise<void> {
    this.client.close();
    await this.direct.release();
  }
}

/** p50 and p99 of a field over the samples, in microseconds. */
export function percentiles(samples: readonly RequestSample[], key: keyof Omit<RequestSample, 'identical'>): { p50: number; p99: number } {
  const values = samples.map((s) => s[key]);
  return { p50: quantile(values, 0.5), p99: quantile(values, 0.99) };
}
