/**
 * The ONNX writer and the onnx.run kernel: models built in code load in onnxruntime, run
 * through the kernel with outputs identical to a direct run with the exported session
 * options, and every argument is checked before anything runs.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import { CborValue } from '../../../../lib/shared/cbor';
import { DeviceMemory } from '../../src/context/device-memory';
import { createOnnxRunKernel } from '../../src/kernels/onnx-run';
import { onnxSessionOptions } from '../../src/kernels/onnx-runtime';
import { OnnxSessionCache } from '../../src/kernels/onnx-session-cache';
import { OperationError } from '../../src/kernels/operation-error';
import { onnxModelDigest } from '../../src/kernels/registry';
import { DataType, ModelProto, OnnxWriterError, encodeModel, encodeTensor, floatTensor, int64Tensor } from '../../src/onnx/onnx-writer';
import { CALLER, randomF32 } from './helpers';

const SETTINGS = { threads: 1, provider: 'cpu' as const };

/** z = Softmax(Gemm(Relu(x + bias), w^T) ) with x: [batch, 8], w: [4, 8]; also returns the Relu output. */
function tinyModel(): ModelProto {
  return {
    irVersion: 8,
    opsetImports: [{ version: 17 }],
    producerName: 'egpu-test',
    graph: {
      name: 'tiny',
      nodes: [
        { opType: 'Add', inputs: ['x', 'bias'], outputs: ['s'] },
        { opType: 'Relu', inputs: ['s'], outputs: ['r'] },
        { opType: 'Gemm', inputs: ['r', 'w'], outputs: ['y'], attributes: [{ name: 'transB', type: 'int', value: 1 }, { name: 'alpha', type: 'float', value: 0.5 }] },
        { opType: 'Softmax', inputs: ['y'], outputs: ['z'], attributes: [{ name: 'axis', type: 'int', value: -1 }] },
      ],
      inputs: [{ name: 'x', elemType: DataType.FLOAT, shape: ['batch', 8] }],
      outputs: [{ name: 'z', elemType: DataType.FLOAT, shape: ['batch', 4] }, { name: 'r', elemType: DataType.FLOAT, shape: ['batch', 8] }],
      initializers: [floatTensor('bias', [8], randomF32(8)), floatTensor('w', [4, 8], randomF32(32, 3))],
    },
  };
}

const MODEL = encodeModel(tinyModel());
const caches: OnnxSessionCache[] = [];
function cache(maxModels?: number): OnnxSessionCache {
  const created = new OnnxSessionCache(SETTINGS, maxModels);
  caches.push(created);
  return created;
}
afterAll(() => caches.forEach((c) => c.close()));

function loaded(buffers: Record<number, Uint8Array | number>): DeviceMemory {
  const memory = new DeviceMemory(1 << 26);
  for (const [id, content] of Object.entries(buffers)) {
    memory.allocate(Number(id), typeof content === 'number' ? content : content.length);
    if (typeof content !== 'number') memory.write(Number(id)).set(content);
  }
  return memory;
}

function runArgs(overrides: Record<string, CborValue> = {}): Map<string, CborValue> {
  return new Map(Object.entries({
    model: 1, inputNames: ['x'], inputBuffers: [2], inputShapes: [[3, 8]], outputNames: ['z', 'r'], outputBuffers: [3, 4], ...overrides,
  }));
}

function bytesOf(values: Float32Array): Uint8Array {
  return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
}

describe('the ONNX writer', () => {
  it('writes protobuf as the official serializer does: field order, unpacked dims, raw_data', () => {
    const bytes = encodeTensor({ name: 'w', dataType: DataType.FLOAT, dims: [2, 1], rawData: Buffer.from([0, 0, 128, 63, 0, 0, 0, 64]) });
    // dims=2 (08 02), dims=1 (08 01), data_type=FLOAT (10 01), name "w" (42 01 77), raw_data 8 bytes (4a 08 ...)
    expect(bytes.toString('hex')).toBe('0802080110014201774a080000803f00000040');
    expect(encodeTensor(int64Tensor('s', [1], [-1])).toString('hex')).toBe(`080110074201734a08${'ff'.repeat(8)}`);
    expect(encodeTensor({ dataType: DataType.FLOAT, dims: [2], floatData: [1, 2] }).toString('hex')).toBe('080210012208' + '0000803f' + '00000040');
  });

  it('refuses a tensor whose data does not match its dims, and models without opsets', () => {
    expect(() => encodeTensor({ name: 'w', dataType: DataType.FLOAT, dims: [3], rawData: new Uint8Array(8) })).toThrow(OnnxWriterError);
    expect(() => encodeTensor({ name: 'w', dataType: DataType.FLOAT, dims: [1] })).toThrow(/exactly one of/);
    expect(() => encodeModel({ ...tinyModel(), opsetImports: [] })).toThrow(/operator set/);
  });

  it('writes models onnxruntime loads with the names, types and shapes given', async () => {
    const session = await ort.InferenceSession.create(MODEL, onnxSessionOptions(SETTINGS));
    expect(session.inputNames).toEqual(['x']);
    expect(session.outputNames).toEqual(['z', 'r']);
    expect(session.inputMetadata).toEqual([{ name: 'x', isTensor: true, type: 'float32', shape: ['batch', 8] }]);
    await session.release();
  });
});

describe('onnx.run', () => {
  it('gives outputs identical to a direct onnxruntime run with the exported options, in resized buffers', async () => {
    const input = randomF32(24, 2);
    const memory = loaded({ 1: MODEL, 2: bytesOf(input), 3: 0, 4: 1 });
    const launch = createOnnxRunKernel(cache()).prepare(runArgs(), memory, CALLER);
    expect(launch.codeSha384.equals(onnxModelDigest(MODEL))).toBe(true);
    expect(launch.device).toBe('cpu');
    expect(createOnnxRunKernel(new OnnxSessionCache({ ...SETTINGS, provider: 'cuda' })).prepare(runArgs(), memory, CALLER).device).toBe('gpu');
    const computeUs = await launch.run();
    expect(Number.isSafeInteger(computeUs) && computeUs >= 0).toBe(true);

    const direct = await ort.InferenceSession.create(MODEL, onnxSessionOptions(SETTINGS));
    const expected = await direct.run({ x: new ort.Tensor('float32', input, [3, 8]) });
    await direct.release();
    expect(memory.read(3).equals(Buffer.from(bytesOf(expected.z.data as Float32Array)))).toBe(true);
    expect(memory.read(4).equals(Buffer.from(bytesOf(expected.r.data as Float32Array)))).toBe(true);
    expect(memory.read(3).length).toBe(3 * 4 * 4);
  });

  it('reuses the cached session for the same model and evicts the least recently used', async () => {
    const sessions = cache(1);
    const kernel = createOnnxRunKernel(sessions);
    const memory = loaded({ 1: MODEL, 2: bytesOf(randomF32(8)), 3: 0, 4: 0 });
    await kernel.prepare(runArgs({ inputShapes: [[1, 8]] }), memory, CALLER).run();
    await kernel.prepare(runArgs({ inputShapes: [[1, 8]] }), memory, CALLER).run();
    expect(sessions.size).toBe(1);
    const other = encodeModel({ ...tinyModel(), producerName: 'another' });
    memory.resize(1, other.length).set(other);
    await kernel.prepare(runArgs({ inputShapes: [[1, 8]] }), memory, CALLER).run();
    expect(sessions.size).toBe(1);
  });

  it('fails cleanly (KERNEL_FAILED) when onnxruntime refuses the model or the inputs', async () => {
    const kernel = createOnnxRunKernel(cache());
    const garbage = loaded({ 1: Buffer.from('not a model'), 2: bytesOf(randomF32(8)), 3: 0, 4: 0 });
    await expect(kernel.prepare(runArgs({ inputShapes: [[1, 8]] }), garbage, CALLER).run()).rejects.toMatchObject({ code: 'KERNEL_FAILED' });
    const memory = loaded({ 1: MODEL, 2: bytesOf(randomF32(16)), 3: 0, 4: 0 });
    await expect(kernel.prepare(runArgs({ inputShapes: [[2, 4]] }), memory, CALLER).run()).rejects.toMatchObject({ code: 'KERNEL_FAILED' });
    await expect(kernel.prepare(runArgs({ inputNames: ['nope'], inputShapes: [[2, 8]] }), memory, CALLER).run()).rejects.toMatchObject({ code: 'KERNEL_FAILED' });
    await expect(kernel.prepare(runArgs({ outputNames: ['z', 'nope'], inputShapes: [[2, 8]] }), memory, CALLER).run()).rejects.toMatchObject({ code: 'KERNEL_FAILED' });
  });

  it('keeps outputs within the memory cap', async () => {
    const memory = new DeviceMemory(MODEL.length + 3 * 32 + 16);
    memory.allocate(1, MODEL.length);
    memory.write(1).set(MODEL);
    memory.allocate(2, 3 * 32);
    memory.allocate(3, 0);
    memory.allocate(4, 0);
    await expect(createOnnxRunKernel(cache()).prepare(runArgs(), memory, CALLER).run()).rejects.toMatchObject({ code: 'OUT_OF_MEMORY' });
  });

  const refusals: [string, Record<string, CborValue>, string, RegExp][] = [
    ['an input shape larger than its buffer', { inputShapes: [[4, 8]] }, 'BAD_ARGS', /input 'x' buffer 2 has 96 bytes/],
    ['mismatched input lists', { inputBuffers: [2, 2] }, 'BAD_ARGS', /same length/],
    ['mismatched output lists', { outputBuffers: [3] }, 'BAD_ARGS', /same length/],
    ['an output that is an input', { outputBuffers: [3, 2] }, 'BAD_ARGS', /must differ/],
    ['an output that is the model', { outputBuffers: [1, 4] }, 'BAD_ARGS', /must differ/],
    ['the same output twice', { outputBuffers: [3, 3] }, 'BAD_ARGS', /must differ/],
    ['a name given twice', { outputNames: ['z', 'z'] }, 'BAD_ARGS', /twice/],
    ['an empty name list', { inputNames: [] }, 'BAD_ARGS', /list of 1 to 16/],
    ['17 inputs', { inputNames: Array.from({ length: 17 }, (_, i) => `i${i}`) }, 'BAD_ARGS', /list of 1 to 16/],
    ['a rank above 8', { inputShapes: [[1, 1, 1, 1, 1, 1, 1, 1, 1]] }, 'BAD_ARGS', /at most 8 dims/],
    ['a dim that overflows', { inputShapes: [[2 ** 20, 2 ** 20]] }, 'BAD_ARGS', /exceeds/],
    ['a missing output buffer', { outputBuffers: [3, 9] }, 'NO_SUCH_BUFFER', /buffer 9/],
    ['a missing model', { model: 8 }, 'NO_SUCH_BUFFER', /buffer 8/],
    ['an unknown argument', { inputTypes: ['float32'] }, 'BAD_ARGS', /unexpected argument 'inputTypes'/],
    ['a name that is not text', { inputNames: [7] }, 'BAD_ARGS', /texts/],
  ];
  it.each(refusals)('refuses %s before running anything', (_what, overrides, code, reason) => {
    const memory = loaded({ 1: MODEL, 2: 3 * 32, 3: 0, 4: 0 });
    try {
      createOnnxRunKernel(cache()).prepare(runArgs(overrides), memory, CALLER);
      throw new Error('not refused');
    } catch (error) {
      expect(error).toBeInstanceOf(OperationError);
      expect(error).toMatchObject({ code });
      expect((error as OperationError).reason).toMatch(reason);
    }
  });

  it('refuses an empty model buffer', () => {
    const memory = loaded({ 1: 0, 2: 96, 3: 0, 4: 0 });
    expect(() => createOnnxRunKernel(cache()).prepare(runArgs(), memory, CALLER)).toThrow(/model buffer 1 is empty/);
  });
});
