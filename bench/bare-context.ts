/**
 * The compute end of the bare path (bare-path.ts): a process that runs ResNet-50 with
 * onnxruntime exactly as `egpu context` does (same session options), with none of the
 * offload around it. It listens on the Unix socket given as its first argument, loads the
 * model file given as its second, prints `ready`, then answers each request
 *
 *   u32 length (big-endian) | input f32 bytes
 *
 * with
 *
 *   u32 length | f64 computeUs (little-endian) | output f32 bytes
 *
 * computeUs timed around the run as the context times it (kernels/onnx-run.ts). The input
 * is copied out of the socket's chunks into one buffer, as the context copies opened frames
 * into device memory. For the benchmark only: no limits, one connection, no error handling
 * beyond exiting.
 */
import * as net from 'node:net';
import { readFileSync } from 'node:fs';
import { RESNET50_INPUT, RESNET50_OUTPUT, referenceSession } from '../scripts/build-resnet50';

const LENGTH_BYTES = 4;

async function main(socketPath: string, modelPath: string): Promise<void> {
  const { ort, session } = await referenceSession(readFileSync(modelPath));
  const server = net.createServer((socket) => {
    let pending: Buffer = Buffer.alloc(0);
    let input: Buffer | undefined;
    let filled = 0;
    socket.on('data', (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      if (input === undefined) {
        if (pending.length < LENGTH_BYTES) return;
        input = Buffer.alloc(pending.readUInt32BE(0));
        pending = pending.subarray(LENGTH_BYTES);
        filled = 0;
      }
      const take = Math.min(pending.length, input.length - filled);
      pending.copy(input, filled, 0, take);
      filled += take;
      pending = pending.subarray(take);
      if (filled < input.length) return;
      const request = input;
      input = undefined;
      void answer(socket, request);
    });
  });

  async function answer(socket: net.Socket, request: Buffer): Promise<void> {
    const data = new Float32Array(request.buffer, request.byteOffset, request.length / 4);
    const start = process.hrtime.bigint();
    const results = await session.run({ [RESNET50_INPUT.name]: new ort.Tensor('float32', data, [...RESNET50_INPUT.dims]) });
    const computeUs = Number(process.hrtime.bigint() - start) / 1e3;
    const logits = results[RESNET50_OUTPUT.name].data as Float32Array;
    const reply = Buffer.alloc(LENGTH_BYTES + 8 + logits.byteLength);
    reply.writeUInt32BE(8 + logits.byteLength, 0);
    reply.writeDoubleLE(computeUs, LENGTH_BYTES);
    Buffer.from(logits.buffer, logits.byteOffset, logits.byteLength).copy(reply, LENGTH_BYTES + 8);
    socket.write(reply);
  }

  server.listen(socketPath, () => process.stdout.write('ready\n'));
  process.on('SIGTERM', () => process.exit(0));
}

main(process.argv[2], process.argv[3]).catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
