import { encodeModel, DataType, int64Tensor } from '../assets/gpu-runtime/src/onnx/onnx-writer';
import { loadModelHere } from '../assets/gpu-runtime/src/kernels/onnx-model';
const elems = Number(process.argv[2] ?? 2 ** 30);
const model = encodeModel({
  irVersion: 8, opsetImports: [{ domain: '', version: 17 }],
  graph: {
    name: 'hostile',
    nodes: [
      { opType: 'Expand', inputs: ['x', 'shape'], outputs: ['big'] },
      { opType: 'ReduceSum', inputs: ['big'], outputs: ['y'], attributes: [{ name: 'keepdims', type: 'int', value: 0 }] },
    ],
    initializers: [int64Tensor('shape', [1], [elems])],
    inputs: [{ name: 'x', elemType: DataType.FLOAT, shape: [1] }],
    outputs: [{ name: 'y', elemType: DataType.FLOAT, shape: [] }],
  },
} as any);
(async () => {
  const m = await loadModelHere(model, { provider: 'cpu', threads: 1 } as any);
  console.log('loaded, rss', process.memoryUsage().rss >> 20);
  try {
    const r = await m.run([{ name: 'x', shape: [1], data: new Float32Array([1]) }], ['y']);
    console.log('ran', new Float32Array(r.outputs[0].bytes.buffer.slice(0))[0], 'rss', process.memoryUsage().rss >> 20);
  } catch (e) { console.log('failed:', (e as Error).message); }
})();
