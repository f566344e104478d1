/**
 * `egpu sgs --config sgs.json`: the Secure GPU Scheduler on the parent instance. Prints the
 * configuration (with the MPS settings of each partition), serves until SIGTERM or SIGINT,
 * then drains and exits 0.
 */
import { gpuPresent, renderConfigSummary } from '../sgs/config-summary';
import { loadSgsConfig } from '../sgs/config';
import { installHeapSnapshotHook } from '../sgs/heap-snapshot-hook';
import { SgsServer } from '../sgs/server';
import { Command, requireOption } from './command';

/** After the drain, a handle nobody closed must not keep a stopped SGS alive. */
const EXIT_GRACE_MS = 2_000;

const sgs: Command = {
  path: ['sgs'],
  summary: 'Run the Secure GPU Scheduler (SGS) on the parent instance.\n'
    + 'Admits enclave sessions after verifying their attestation against the PCR allowlist,\n'
    + 'relays them to the execution context, schedules their operations fairly with bounded\n'
    + 'queues and deadlines, publishes EnclaveGPU metrics and the kernel-attestation log, and\n'
    + 'serves /health. SIGTERM drains: queued and in-flight operations finish, then exit 0. If the\n'
    + 'enclave link stops accepting for good, SGS drains the same way and exits 1.',
  usage: [
    '  --config FILE          sgs.json: listen addresses, root, allowlist, partitions, limits, metrics',
    '  --check                validate the configuration, print it and exit',
  ].join('\n'),
  options: {
    config: { type: 'string' },
    check: { type: 'boolean' },
  },
  async run(values, io) {
    const config = loadSgsConfig(requireOption(values, 'config'));
    io.stdout(renderConfigSummary(config, { gpuPresent: gpuPresent() }));
    if (values.check) return 0;
    const log = (line: string) => io.stderr(`${line}\n`);
    const server = await SgsServer.start(config, { log });
    const removeHook = installHeapSnapshotHook(log);
    io.stdout(`sgs: ready: enclave link ${server.enclaveAddress}, health ${server.healthAddress ?? 'off'}, pid ${process.pid}\n`);
    const stop = await Promise.race([
      new Promise<NodeJS.Signals>((resolve) => {
        process.once('SIGTERM', resolve);
        process.once('SIGINT', resolve);
      }),
      server.listenerFailure,
    ]);
    const failed = stop instanceof Error;
    log(failed ? 'sgs: no new session can be accepted: draining, then exiting 1 (the service manager restarts SGS)' : `sgs: ${stop}: draining`);
    await server.drain();
    removeHook();
    const status = failed ? 1 : 0;
    setTimeout(() => process.exit(status), EXIT_GRACE_MS).unref();
    return status;
  },
};

export const SGS_COMMANDS: Command[] = [sgs];
