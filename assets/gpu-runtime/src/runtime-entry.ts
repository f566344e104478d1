/**
 * How to start the runtime's entry point (cli.ts) in another process or thread: the bundle
 * (dist/egpu.js) as it is, or the TypeScript sources through tsx (tests, the demo and the
 * benchmark run them from the sources).
 */
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

function fromSources(): boolean {
  return __filename.endsWith('.ts');
}
