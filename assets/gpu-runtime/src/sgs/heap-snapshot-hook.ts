/**
 * For the test that proves SGS never holds a key or plaintext: with EGPU_SGS_HEAP_SNAPSHOT_DIR
 * set, SIGUSR2 makes SGS write a V8 heap snapshot there and log its path. Off unless the
 * variable is set: a snapshot is a copy of the process's memory, and writing one blocks it.
 */
import { join } from 'node:path';
import { writeHeapSnapshot } from 'node:v8';

export const HEAP_SNAPSHOT_ENV = 'EGPU_SGS_HEAP_SNAPSHOT_DIR';

/** Installs the SIGUSR2 handler when the variable is set; returns a function that removes it. */
export function installHeapSnapshotHook(log: (line: string) => void, env: NodeJS.ProcessEnv = process.env): () => void {
  const dir = env[HEAP_SNAPSHOT_ENV];
  if (dir === undefined || dir === '') return () => {};
  let count = 0;
  const handler = () => {
    const file = writeHeapSnapshot(join(dir, `sgs-${process.pid}-${++count}.heapsnapshot`));
    log(`sgs: heap snapshot written: ${file}`);
  };
  process.on('SIGUSR2', handler);
  log(`sgs: heap snapshots on SIGUSR2 into ${dir} (${HEAP_SNAPSHOT_ENV} is set; for tests only)`);
  return () => process.off('SIGUSR2', handler);
}
