/**
 * `egpu egp`: serves the EGP API on a Unix socket inside the enclave (newline-delimited JSON,
 * README "EGP socket API"), one ABE session per connection, until SIGTERM or SIGINT.
 *
 * Local mode: the enclave's attestation comes from the simulated NSM whose state is in
 * --nsm-state (created there on first use; its root.pem is what SGS and the context pin).
 */
import { ImagePcrs } from '../abe/key-schedule';
import { SIMULATED_ENCLAVE_PCRS, loadOrCreateNsm, simulatedEnclave } from '../egp/local-enclave';
import { EgpSocketServer } from '../egp/socket-server';
import { UsageError } from '../errors';
import { parseAddress } from '../protocol/transport';
import { parsePcrAssignments } from './attest-inputs';
import { Command, requireOption } from './command';

const egp: Command = {
  path: ['egp'],
  summary: 'Serve the Enclave GPU Proxy API (malloc, memcpyHtoD, launchKernel, memcpyDtoH, free,\n'
    + 'synchronize) on a Unix socket for applications inside the enclave: newline-delimited JSON,\n'
    + 'bytes in base64, one attested session with SGS per connection. Reconnects and replays after\n'
    + 'an SGS or context restart. Exits 0 on SIGTERM or SIGINT.',
  usage: [
    '  --listen unix:PATH     where applications connect',
    '  --sgs ADDR             SGS\'s enclave address: vsock:3:PORT in an enclave (the parent is CID 3),\n'
      + '                         unix:/path or tcp:host:port in local mode',
    '  --nsm-state DIR        the simulated NSM\'s directory (local mode); created on first use',
    '  --pcr N=HEX            the simulated enclave\'s PCR0, 1 or 2 (48 bytes); default fixed test values',
  ].join('\n'),
  options: {
    'listen': { type: 'string' },
    'sgs': { type: 'string' },
    'nsm-state': { type: 'string' },
    'pcr': { type: 'string', multiple: true },
  },
  async run(values, io) {
    const listen = parseAddress(requireOption(values, 'listen'));
    if (listen.kind !== 'unix') throw new UsageError('--listen must be a unix: address (the API is for processes inside the enclave)');
    const sgs = parseAddress(requireOption(values, 'sgs'));
    const given = parsePcrAssignments(values.pcr as string[] | undefined, '--pcr');
    if (Object.keys(given).some((index) => !['0', '1', '2'].includes(index))) throw new UsageError('--pcr sets PCR0, PCR1 or PCR2');
    const pcrs = SIMULATED_ENCLAVE_PCRS.map((value, index) => given[index] ?? value) as unknown as ImagePcrs;
    const nsm = loadOrCreateNsm(requireOption(values, 'nsm-state'));
    const server = await EgpSocketServer.start({ listen, sgs, enclave: simulatedEnclave(nsm, pcrs), log: (line) => io.stderr(`egpu egp: ${line}\n`) });
    io.stderr(`egpu egp: listening on ${server.address}, SGS ${values.sgs as string}, simulated NSM module ${nsm.moduleId}\n`);
    const signal = await new Promise<NodeJS.Signals>((resolve) => {
      process.once('SIGTERM', resolve);
      process.once('SIGINT', resolve);
    });
    io.stderr(`egpu egp: ${signal}: closing ${server.connectionCount} connection(s)\n`);
    await server.close();
    return 0;
  },
};

export const EGP_COMMANDS: Command[] = [egp];
