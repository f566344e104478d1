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
import { isOnnxWorkerData, serveOnnxWorker } from './kernels/onnx-worker-thread';

/** Every command, by group. */
export const COMMANDS: Command[] = [...ATTEST_COMMANDS, ...ARTEFACT_COMMANDS, ...SGS_COMMANDS, ...CONTEXT_COMMANDS, ...EGP_COMMANDS];

if (!isMainThread && isOnnxWorkerData(workerData)) {
  serveOnnxWorker(parentPort!, workerData.settings); // an execution context's onnx worker thread
} else if (require.main === module) {
  dispatch(COMMANDS, process.argv.slice(2)).then(
    (status) => { process.exitCode = status; },
    (error: unknown) => {
      process.stderr.write(`egpu: internal error: ${error instanceof Error ? error.stack : String(error)}\n`);
      process.exitCode = 70;
    },
  );
}
