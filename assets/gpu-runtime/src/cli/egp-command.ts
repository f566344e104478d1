/**
 * `egpu egp`: serves the EGP API on a Unix socket inside the enclave (newline-delimited JSON,
 * README "EGP socket API"), one ABE session per connection, until SIGTERM or SIGINT.
 *
 * The enclave's attestation comes from exactly one of:
 * - --nsm-device PATH (in a Nitro Enclave, /dev/nsm): the Nitro Secure Module, which signs
 *   documents under the AWS root and reports the image's PCR0-2 (attestation/nsm-device.ts);
 * - --nsm-state DIR (local mode): the simulated NSM whose state is in DIR (created there on
 *   first use; its root.pem is what SGS and the context pin), with fixed or --pcr PCRs.
 */
import type { EnclaveIdentity } from '../abe/handshake';
import { ImagePcrs } from '../abe/key-schedule';
import { NsmDevice, deviceEnclave, isDebugMode } from '../attestation/nsm-device';
import { SIMULATED_ENCLAVE_PCRS, loadOrCreateNsm, simulatedEnclave } from '../egp/local-enclave';
import { EgpSocketServer } from '../egp/socket-server';
import { UsageError } from '../errors';
import { parseAddress } from '../protocol/transport';
import { parsePcrAssignments } from './attest-inputs';
import { Command, CommandIo, requireOption } from './command';

const egp: Command = {
  path: ['egp'],
  summary: 'Serve the Enclave GPU Proxy API (malloc, memcpyHtoD, launchKernel, memcpyDtoH, free,\n'
    + 'synchronize) on a Unix socket for applications inside the enclave: newline-delimited JSON,\n'
    + 'bytes in base64, one attested session with SGS per connection. Reconnects and replays after\n'
    + 'an SGS or context restart. Exits 0 on SIGTERM or SIGINT.',
  usage: [
    '  --listen unix:PATH     where applications connect (the socket file is made owner-only, 0600)',
    '  --sgs ADDR             SGS\'s enclave address: vsock:3:PORT in an enclave (the parent is CID 3),\n'
      + '                         unix:/path or tcp:host:port in local mode',
    '  --nsm-device PATH      the Nitro Secure Module: /dev/nsm inside a Nitro Enclave (documents\n'
      + '                         under the AWS root, PCR0-2 read from it)',
    '  --nsm-state DIR        or, in local mode, the simulated NSM\'s directory (created on first\n'
      + '                         use); exactly one of --nsm-device and --nsm-state',
    '  --pcr N=HEX            with --nsm-state: the simulated enclave\'s PCR0, 1 or 2 (48 bytes);\n'
      + '                         default fixed test values',
  ].join('\n'),
  options: {
    'listen': { type: 'string' },
    'sgs': { type: 'string' },
    'nsm-device': { type: 'string' },
    'nsm-state': { type: 'string' },
    'pcr': { type: 'string', multiple: true },
  },
  async run(values, io) {
    const listen = parseAddress(requireOption(values, 'listen'));
    if (listen.kind !== 'unix') throw new UsageError('--listen must be a unix: address (the API is for processes inside the enclave)');
    const sgs = parseAddress(requireOption(values, 'sgs'));
    const { enclave, description } = await enclaveIdentity(values, io);
    const server = await EgpSocketServer.start({ listen, sgs, enclave, log: (line) => io.stderr(`egpu egp: ${line}\n`) });
    io.stderr(`egpu egp: listening on ${server.address}, SGS ${values.sgs as string}, ${description}\n`);
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

/** The enclave identity the options choose, and a line saying which it is. */
async function enclaveIdentity(values: Record<string, unknown>, io: CommandIo): Promise<{ enclave: EnclaveIdentity; description: string }> {
  const device = values['nsm-device'];
  const state = values['nsm-state'];
  if ((device === undefined) === (state === undefined)) {
    throw new UsageError('give exactly one of --nsm-device PATH (in a Nitro Enclave: /dev/nsm) and --nsm-state DIR (local mode)');
  }
  if (typeof device === 'string') {
    if (device.length === 0) throw new UsageError('--nsm-device needs the device path (in a Nitro Enclave: /dev/nsm)');
    if (values.pcr !== undefined) throw new UsageError('--pcr sets the simulated enclave\'s PCRs (with --nsm-state); with --nsm-device they are read from the NSM');
    const nsm = NsmDevice.open({ path: device });
    const enclave = await deviceEnclave(nsm);
    if (isDebugMode(enclave.pcrs)) {
      io.stderr('egpu egp: PCR0-2 are zero: this enclave runs in debug mode, and SGS and contexts that expect an image\'s PCRs refuse it\n');
    }
    return { enclave, description: `NSM ${device}, PCR0 ${enclave.pcrs[0].toString('hex')}` };
  }
  const given = parsePcrAssignments(values.pcr as string[] | undefined, '--pcr');
  if (Object.keys(given).some((index) => !['0', '1', '2'].includes(index))) throw new UsageError('--pcr sets PCR0, PCR1 or PCR2');
  const pcrs = SIMULATED_ENCLAVE_PCRS.map((value, index) => given[index] ?? value) as unknown as ImagePcrs;
  const nsm = loadOrCreateNsm(requireOption(values, 'nsm-state'));
  return { enclave: simulatedEnclave(nsm, pcrs), description: `simulated NSM module ${nsm.moduleId}` };
}
