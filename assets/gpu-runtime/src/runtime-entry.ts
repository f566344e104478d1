/**
 * How to start the runtime's entry point (cli.ts) in another process or thread: the bundle
 * (dist/egpu.js) as it is, or the TypeScript sources through tsx (tests, the demo and the
 * benchmark run them from the sources).
 */
import { ChildProcess, spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';

export interface RuntimeEntry {
  /** The file to run. */
  readonly script: string;
  /** Node options it needs before the script (a loader for the sources). */
  readonly nodeArgs: string[];
}

/** For a child process: `node ...nodeArgs script ...`. */
export function runtimeEntry(): RuntimeEntry {
  if (fromSources()) {
    return { script: resolve(__dirname, 'cli.ts'), nodeArgs: ['--import', pathToFileURL(require.resolve('tsx')).href] };
  }
  return { script: __filename, nodeArgs: [] }; // the bundle: this code is in it
}

/** Starts the entry point in a worker thread of this process; cli.ts serves what `workerData` names. */
export function startRuntimeThread(workerData: unknown): Worker {
  if (fromSources()) {
    // Node 20 does not apply --import loaders to worker threads: the thread registers tsx's hook itself.
    const source = `require(${JSON.stringify(require.resolve('tsx/cjs'))});\nrequire(${JSON.stringify(resolve(__dirname, 'cli.ts'))});\n`;
    return new Worker(source, { eval: true, workerData });
  }
  return new Worker(__filename, { workerData });
}

/** The environment variable that makes the entry point serve an onnx worker over IPC (cli.ts): its JSON settings. */
export const ONNX_WORKER_PROCESS_ENV = 'EGPU_ONNX_WORKER_PROCESS';

/**
 * Starts the entry point in a child process connected by IPC (structured clones), as an onnx
 * worker with `settings`, its data memory limited to `dataLimitBytes` (RLIMIT_DATA, set by
 * the shell's `ulimit -d` before it execs Node): an allocation beyond it fails in the child,
 * where onnxruntime reports it as a failed run. (RLIMIT_DATA bounds what the child reserves,
 * not what the host has left: a limit above the host's free memory still lets the host run
 * out first, and then the worker, which offers itself to the out-of-memory killer, goes.)
 */
export function startRuntimeProcess(settings: unknown, dataLimitBytes: number): ChildProcess {
  const { script, nodeArgs } = runtimeEntry();
  const limitKiB = Math.max(1, Math.floor(dataLimitBytes / 1024));
  return spawn('/bin/sh', ['-c', 'ulimit -d "$1" && shift && exec "$@"', 'sh', String(limitKiB), process.execPath, ...nodeArgs, script], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    serialization: 'advanced',
    env: { ...process.env, [ONNX_WORKER_PROCESS_ENV]: JSON.stringify(settings) },
  });
}

function fromSources(): boolean {
  return __filename.endsWith('.ts');
}
