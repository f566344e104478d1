/**
 * `egpu context`: runs an execution context until SIGTERM or SIGINT, then ends every session
 * (zeroising its keys and buffers) and exits 0.
 */
import { checkImagePolicy } from '../context/attestation-check';
import { DEFAULT_MAX_SESSIONS, DEFAULT_MEMORY_CAP, ExecutionContext } from '../context/execution-context';
import { RuntimeError, UsageError } from '../errors';
import { DEFAULT_ONNX_THREADS, MAX_ONNX_THREADS } from '../kernels/onnx-runtime';
import { MIN_PROCESS_MEMORY_LIMIT, minProcessMemoryLimit } from '../kernels/onnx-worker';
import { formatAddress, parseAddress } from '../protocol/transport';
import { parsePcrAssignments } from './attest-inputs';
import { Command, requireOption } from './command';

const context: Command = {
  path: ['context'],
  summary: 'Run an execution context: the process that holds session keys and device buffers and runs kernels.\n'
    + 'SGS connects to it, one connection per enclave session. It verifies each enclave\'s attestation\n'
    + 'itself, runs the built-in kernels (add, relu, softmax, gemm) and onnx.run, and answers with sealed\n'
    + 'results. Logs one line per session start and end to stderr; exits 0 on SIGTERM or SIGINT.',
  usage: [
    '  --listen ADDR          where SGS connects: unix:/path or tcp:host:port (a host-local link; vsock is the enclave\'s link to SGS)',
    '  --root aws|FILE.pem    the root enclave documents must chain to (default aws; a PEM file in local mode)',
    '  --expect-pcr N=HEX     a PCR value every enclave must attest; repeat for several. Required: PCR0, PCR8,',
    '                         or PCR1 and PCR2 (the values nitro-cli describe-eif prints)',
    '  --allow-any-image      serve enclaves of any image, with no --expect-pcr (development only)',
    '  --allow-debug-mode     accept all-zero expected PCRs, i.e. enclaves in debug mode (development only)',
    `  --memory-cap BYTES     device memory per session (default ${DEFAULT_MEMORY_CAP})`,
    `  --max-sessions N       concurrent sessions; more are refused BUSY (default ${DEFAULT_MAX_SESSIONS})`,
    `  --threads N            onnxruntime intra-op threads (default ${DEFAULT_ONNX_THREADS})`,
    '  --onnx-worker          load and run onnx.run\'s models in a worker thread, so that a long inference or a',
    '                         model being built does not hold up handshakes and other sessions (default: in the',
    '                         main thread, which answers a lone session\'s inference sooner)',
    '  --onnx-memory-limit BYTES  load and run them in a child process whose data memory is limited to BYTES',
    `                         (at least ${MIN_PROCESS_MEMORY_LIMIT} plus 8 MiB per --threads): a model that needs more host`,
    '                         memory fails with KERNEL_FAILED instead of pushing the context toward the out-of-memory',
    '                         killer (default: no limit; with --onnx-worker too, the process is used)',
  ].join('\n'),
  options: {
    'listen': { type: 'string' },
    'root': { type: 'string' },
    'expect-pcr': { type: 'string', multiple: true },
    'allow-any-image': { type: 'boolean' },
    'allow-debug-mode': { type: 'boolean' },
    'memory-cap': { type: 'string' },
    'max-sessions': { type: 'string' },
    'threads': { type: 'string' },
    'onnx-worker': { type: 'boolean' },
    'onnx-memory-limit': { type: 'string' },
  },
  async run(values, io) {
    const listen = parseAddress(requireOption(values, 'listen'));
    if (listen.kind === 'vsock') {
      throw new UsageError('--listen must be a unix: or tcp: address: the context runs on the host and only SGS connects to it (vsock is the enclave\'s link to SGS)');
    }
    const expectedPcrs = Object.fromEntries(
      Object.entries(parsePcrAssignments(values['expect-pcr'] as string[] | undefined, '--expect-pcr')).map(([n, v]) => [n, v.toString('hex')]),
    );
    const memoryCap = parseCount(values['memory-cap'], '--memory-cap', 0, Number.MAX_SAFE_INTEGER, DEFAULT_MEMORY_CAP);
    const maxSessions = parseCount(values['max-sessions'], '--max-sessions', 1, 65_536, DEFAULT_MAX_SESSIONS);
    const threads = parseCount(values.threads, '--threads', 1, MAX_ONNX_THREADS, DEFAULT_ONNX_THREADS);
    const onnxMemoryLimit = values['onnx-memory-limit'] === undefined ? undefined
      : parseCount(values['onnx-memory-limit'], '--onnx-memory-limit', minProcessMemoryLimit(threads), Number.MAX_SAFE_INTEGER, 0);
    const policy = { expectedPcrs, allowAnyImage: values['allow-any-image'] === true, allowDebugMode: values['allow-debug-mode'] === true };
    try {
      checkImagePolicy(policy, { anyImage: '--allow-any-image', debugMode: '--allow-debug-mode' });
    } catch (error) {
      throw new UsageError(`--expect-pcr: ${(error as RuntimeError).reason}`);
    }
    if (policy.allowAnyImage && Object.keys(expectedPcrs).length === 0) io.stderr('egpu context: --allow-any-image: serving enclaves of ANY image; never do this with real data\n');
    const server = await ExecutionContext.start({
      listen,
      root: (values.root as string | undefined) ?? 'aws',
      expectedPcrs: Object.keys(expectedPcrs).length > 0 ? expectedPcrs : undefined,
      allowAnyImage: policy.allowAnyImage,
      allowDebugMode: policy.allowDebugMode,
      memoryCap,
      maxSessions,
      threads,
      onnxWorker: values['onnx-worker'] === true,
      onnxProcessMemoryLimit: onnxMemoryLimit,
      log: (line) => io.stderr(`egpu context: ${line}\n`),
    });
    // The pid is this process's own: launchers such as tsx run the command in a child, and
    // whoever wants to signal the context needs its pid.
    io.stderr(`egpu context: listening on ${formatAddress(server.address)} (onnxruntime ${server.onnx.provider}, ${server.onnx.threads} thread${server.onnx.threads > 1 ? 's' : ''}${onnxMemoryLimit !== undefined ? `, in a worker process limited to ${onnxMemoryLimit} bytes` : values['onnx-worker'] === true ? ', in a worker thread' : ''}), pid ${process.pid}\n`);
    const signal = await untilSignal();
    io.stderr(`egpu context: ${signal}: ending ${server.sessionCount} session${server.sessionCount === 1 ? '' : 's'}\n`);
    await server.close();
    return 0;
  },
};

export const CONTEXT_COMMANDS: Command[] = [context];

/** A decimal integer option within [min, max], or its default. */
function parseCount(value: unknown, option: string, min: number, max: number, fallback: number): number {
  if (value === undefined) return fallback;
  const text = String(value);
  const number = Number(text);
  if (!/^\d{1,16}$/.test(text) || number < min || number > max) {
    throw new UsageError(`${option} must be an integer from ${min} to ${max}, got '${text}'`);
  }
  return number;
}

function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      resolve(signal);
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}
