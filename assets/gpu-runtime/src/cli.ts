#!/usr/bin/env node
/**
 * egpu: the cdk-enclave-gpu runtime's command line (and, in a worker thread, an execution
 * context's onnx worker: kernels/onnx-worker-thread.ts).
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { ARTEFACT_COMMANDS } from './cli/artefact-command';
import { ATTEST_COMMANDS } from './cli/attest-command';
import { Command, dispatch } from './cli/command';
import { CONTEXT_COMMANDS } from './cli/context-command';
import { EGP_COMMANDS } from './cli/egp-command';
import { SGS_COMMANDS } from './cli/sgs-command';
import { isOnnxWorkerData, processPort, serveOnnxWorker } from './kernels/onnx-worker-thread';
import { ONNX_WORKER_PROCESS_ENV } from './runtime-entry';

/** Every command, by group. */
export const COMMANDS: Command[] = [...ATTEST_COMMANDS, ...ARTEFACT_COMMANDS, ...SGS_COMMANDS, ...CONTEXT_COMMANDS, ...EGP_COMMANDS];

const onnxWorkerProcess = process.env[ONNX_WORKER_PROCESS_ENV];
delete process.env[ONNX_WORKER_PROCESS_ENV]; // read once: nothing this process starts inherits it
if (!isMainThread && isOnnxWorkerData(workerData)) {
  serveOnnxWorker(parentPort!, workerData.settings); // an execution context's onnx worker thread
} else if (onnxWorkerProcess !== undefined && process.send !== undefined) {
  serveOnnxWorker(processPort(), JSON.parse(onnxWorkerProcess)); // or its onnx worker process (memory-limited)
} else if (require.main === module) {
  dispatch(COMMANDS, process.argv.slice(2)).then(
    (status) => { process.exitCode = status; },
    (error: unknown) => {
      process.stderr.write(`egpu: internal error: ${error instanceof Error ? error.stack : String(error)}\n`);
      process.exitCode = 70;
    },
  );
}
