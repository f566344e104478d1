/**
 * onnx.run: runs an ONNX model held in one of the session's buffers with onnxruntime-node.
 * Its "code" is the model: launches carry the SHA-384 of the model bytes in their headers.
 *
 * Args:
 *   { model: buffer,                 the ONNX ModelProto bytes
 *     inputNames: [text],            the graph inputs to feed (1 to 16, each 1 to 256 characters)
 *     inputBuffers: [buffer],        one per input: f32 elements, little-endian
 *     inputShapes: [[uint]],         one per input: its dims (rank 0 to 8); the buffer holds at least their product
 *     outputNames: [text],           the graph outputs to fetch (1 to 16)
 *     outputBuffers: [buffer] }      one per output, allocated beforehand (any size, even 0): each is
 *                                    replaced by a buffer of exactly the output's bytes (its element
 *                                    type's little-endian encoding), within the session's memory cap
 *
 * Output buffers must differ from each other, from the inputs and from the model. Inputs are
 * f32 only (what the models we run take); onnxruntime refusing an input name, shape or the
 * model itself fails the launch cleanly (KERNEL_FAILED).
 */
import type { KernelArgs } from '../protocol/op-descriptor';
import { ArgsReader, MAX_F32_ELEMENTS, checkedProduct, f32View } from './kernel-args';
import { Kernel, KernelCaller, KernelMemory, PreparedLaunch } from './kernel';
import { ModelFeed } from './onnx-model';
import { OnnxSessionCache } from './onnx-session-cache';

export const ONNX_RUN_KERNEL = 'onnx.run';
export const MAX_ONNX_VALUES = 16;
const MAX_NAME_CHARS = 256;
const MAX_RANK = 8;

export function createOnnxRunKernel(cache: OnnxSessionCache): Kernel {
  return {
    name: ONNX_RUN_KERNEL,
    prepare(args: KernelArgs, memory: KernelMemory, caller: KernelCaller): PreparedLaunch {
      const reader = new ArgsReader(args, ONNX_RUN_KERNEL);
      const refuse = reader.bad.bind(reader);
      const model = reader.buffer('model');
      const inputNames = reader.texts('inputNames', MAX_ONNX_VALUES, MAX_NAME_CHARS);
      const inputBuffers = reader.buffers('inputBuffers', MAX_ONNX_VALUES);
      const inputShapes = reader.shapes('inputShapes', MAX_ONNX_VALUES, MAX_RANK, MAX_F32_ELEMENTS);
      const outputNames = reader.texts('outputNames', MAX_ONNX_VALUES, MAX_NAME_CHARS);
      const outputBuffers = reader.buffers('outputBuffers', MAX_ONNX_VALUES);
      reader.done();
      if (inputBuffers.length !== inputNames.length || inputShapes.length !== inputNames.length) {
        throw refuse(`inputNames, inputBuffers and inputShapes must have the same length (${inputNames.length}, ${inputBuffers.length}, ${inputShapes.length})`);
      }
      if (outputBuffers.length !== outputNames.length) {
        throw refuse(`outputNames and outputBuffers must have the same length (${outputNames.length}, ${outputBuffers.length})`);
      }
      const reserved = new Set([model, ...inputBuffers]);
      if (new Set(outputBuffers).size !== outputBuffers.length || outputBuffers.some((id) => reserved.has(id))) {
        throw refuse('output buffers must differ from each other, from the inputs and from the model');
      }
      const modelBytes = memory.read(model);
      if (modelBytes.length === 0) throw refuse(`the model buffer ${model} is empty`);
      const feeds: ModelFeed[] = inputNames.map((name, i) => {
        const count = checkedProduct(inputShapes[i], MAX_F32_ELEMENTS, refuse, `the shape of '${name}'`);
        return { name, shape: inputShapes[i], data: f32View(memory, inputBuffers[i], count, false, refuse, `input '${name}'`) };
      });
      outputBuffers.forEach((id) => memory.read(id)); // NO_SUCH_BUFFER before anything runs
      const codeSha384 = memory.digest(model);
      return {
        codeSha384,
        device: cache.device,
        run: () => runModel(cache, caller.image, codeSha384, modelBytes, feeds, outputNames, outputBuffers, memory),
      };
    },
  };
}

async function runModel(
  cache: OnnxSessionCache, image: string, digest: Buffer, model: Buffer, feeds: readonly ModelFeed[],
  outputNames: readonly string[], outputBuffers: readonly number[], memory: KernelMemory,
): Promise<number> {
  const lease = await cache.acquire(image, digest, model);
  try {
    const { outputs, computeUs } = await lease.model.run(feeds, outputNames);
    try {
      outputs.forEach((output, i) => memory.resize(outputBuffers[i], output.bytes.byteLength).set(output.bytes));
    } finally {
      outputs.forEach((output) => output.bytes.fill(0)); // plaintext: only the session's memory keeps it
    }
    return computeUs;
  } finally {
    lease.release();
  }
}
