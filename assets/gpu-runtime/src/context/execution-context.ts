/**
 * The execution context (`egpu context`): a process per GPU (or the CPU in local mode) that
 * SGS connects to, one connection per enclave session. It completes the handshake itself,
 * holds the session keys and device buffers, runs the kernels, and answers with sealed
 * results; SGS relays ciphertext and never holds a key (PROTOCOL.md, DESIGN.md section 4).
 *
 * onnx.run's models load and run in the main thread, or with `onnxWorker` in one worker
 * thread (kernels/onnx-worker.ts), so that a long inference or a model being built does not
 * hold up handshakes or other sessions' operations.
 *
 * Bounded throughout: sessions (maxSessions, refused BUSY beyond), device memory per
 * session (memoryCap), records waiting per session, cached models (maxModels), and the time
 * a handshake may take.
 */
import { Server, Socket } from 'node:net';
import { DEFAULT_ONNX_THREADS, OnnxProvider, OnnxSettings, resolveOnnxProvider } from '../kernels/onnx-runtime';
import { DEFAULT_MAX_MODELS, OnnxSessionCache } from '../kernels/onnx-session-cache';
import { OnnxWorker } from '../kernels/onnx-worker';
import { KernelRegistry, createKernelRegistry } from '../kernels/registry';
import { encodeControl } from '../protocol/control';
import { Address, listen, parseAddress } from '../protocol/transport';
import { ContextRoot, attestationCheck } from './attestation-check';
import { ContextSession, SessionEnvironment } from './context-session';
import { removeStaleSocket } from './stale-socket';

export const DEFAULT_MEMORY_CAP = 1024 ** 3;
export const DEFAULT_MAX_SESSIONS = 256;
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 30_000;
export const DEFAULT_CLOSE_GRACE_MS = 5_000;
/** Eight full frames may wait per session before its socket is paused. */
const MAX_QUEUED_BYTES = 8 * 1024 * 1024;
/** What a refused connection is told to wait before trying again. */
const BUSY_RETRY_MS = 1000;

export interface ExecutionContextOptions {
  /** unix:/path or tcp:host:port (vsock is refused by the transport). */
  readonly listen: string | Address;
  /** The root enclave documents must chain to: 'aws' (default), a certificate, or a PEM file's path. */
  readonly root?: ContextRoot;
  /**
   * PCR index to the hex value every enclave's document must carry (the image allowlist):
   * PCR0, PCR8, or PCR1 and PCR2 at least, none all zeros, unless allowed below.
   */
  readonly expectedPcrs?: Readonly<Record<number, string>>;
  /** Serve enclaves of any image (no expectedPcrs): for development only. Default false. */
  readonly allowAnyImage?: boolean;
  /** Accept all-zero expected PCRs (enclaves in debug mode): for development only. Default false. */
  readonly allowDebugMode?: boolean;
  /** Device memory per session, bytes (default 1 GiB). */
  readonly memoryCap?: number;
  /** Concurrent sessions (default 256); more are refused with BUSY. */
  readonly maxSessions?: number;
  /** onnxruntime intra-op threads (default 1). */
  readonly threads?: number;
  /** onnxruntime execution provider (default 'auto': CUDA where it loads, else CPU). */
  readonly onnxProvider?: OnnxProvider | 'auto';
  /**
   * Load and run onnx.run's models in a worker thread (default false: in the main thread).
   * With it, a long inference or a model being built does not
   * hold up the other sessions' handshakes, uploads and operations, and an upload is opened
   * while another session's model runs. Without it, a lone session's inference is answered
   * sooner (bench/onnx-placement.ts measures both).
   */
  readonly onnxWorker?: boolean;
  /**
   * Load and run onnx.run's models in a child process whose data memory is limited to this
   * many bytes (RLIMIT_DATA; at least 1 GiB plus 8 MiB per onnxruntime thread), instead of this process or a thread (implies
   * `onnxWorker`'s benefits): a model that needs more fails with KERNEL_FAILED rather than
   * pushing the context, which holds every session's keys and buffers, toward the
   * out-of-memory killer. Each run's feeds and outputs are copied over a pipe once more.
   * Default: no limit (the models share the context's memory).
   */
  readonly onnxProcessMemoryLimit?: number;
  /** Models whose onnxruntime sessions stay cached (default 4). */
  readonly maxModels?: number;
  readonly handshakeTimeoutMs?: number;
  /**
   * How long close() lets the sessions' last answers reach a peer that is not reading them
   * before it cuts those connections (default 5000 ms): a peer that stopped reading cannot
   * hold up the shutdown.
   */
  readonly closeGraceMs?: number;
  /** One line per session start and end; default none. */
  readonly log?: (line: string) => void;
  /** The time attestation certificates are checked at; default now. */
  readonly clock?: () => Date;
}

export class ExecutionContext {
  /** Starts listening; resolves once connections are accepted. */
  static async start(options: ExecutionContextOptions): Promise<ExecutionContext> {
    const address = typeof options.listen === 'string' ? parseAddress(options.listen) : options.listen;
    const memoryCap = options.memoryCap ?? DEFAULT_MEMORY_CAP;
    const maxSessions = options.maxSessions ?? DEFAULT_MAX_SESSIONS;
    const handshakeTimeoutMs = options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
    const closeGraceMs = options.closeGraceMs ?? DEFAULT_CLOSE_GRACE_MS;
    for (const [name, value, min] of [['memoryCap', memoryCap, 0], ['maxSessions', maxSessions, 1], ['handshakeTimeoutMs', handshakeTimeoutMs, 1], ['closeGraceMs', closeGraceMs, 0]] as const) {
      if (!Number.isSafeInteger(value) || value < min) throw new RangeError(`${name} must be an integer of at least ${min}, got ${value}`);
    }
    const threads = options.threads ?? DEFAULT_ONNX_THREADS;
    const onnx: OnnxSettings = { threads, provider: await resolveOnnxProvider(options.onnxProvider ?? 'auto', threads) };
    const log = options.log ?? (() => undefined);
    const onnxWorker = options.onnxProcessMemoryLimit !== undefined
      ? new OnnxWorker(onnx, log, undefined, options.onnxProcessMemoryLimit)
      : options.onnxWorker === true ? new OnnxWorker(onnx, log) : undefined;
    const models = new OnnxSessionCache(onnx, options.maxModels ?? DEFAULT_MAX_MODELS, onnxWorker && ((model) => onnxWorker.load(model)));
    const environment: SessionEnvironment = {
      check: attestationCheck({
        root: options.root ?? 'aws',
        expectedPcrs: options.expectedPcrs,
        allowAnyImage: options.allowAnyImage,
        allowDebugMode: options.allowDebugMode,
        clock: options.clock,
      }),
      kernels: createKernelRegistry(models),
      memoryCap,
      handshakeTimeoutMs,
      maxQueuedBytes: MAX_QUEUED_BYTES,
      log,
    };
    if (address.kind === 'unix') await removeStaleSocket(address.path);
    const context = new ExecutionContext(environment, models, onnxWorker, onnx, maxSessions, closeGraceMs);
    context.server = await listen(address, (socket) => context.accept(socket));
    context.address = boundAddress(address, context.server);
    return context;
  }

  /** Where it listens (for tcp port 0, the port chosen). */
  address!: Address;
  private server!: Server;
  private readonly sessions = new Set<ContextSession>();
  private closing?: Promise<void>;

  private constructor(
    private readonly environment: SessionEnvironment,
    private readonly models: OnnxSessionCache,
    private readonly onnxWorker: OnnxWorker | undefined,
    /** The onnxruntime settings in use: a direct run with onnxSessionOptions(onnx) computes the same bits. */
    readonly onnx: OnnxSettings,
    private readonly maxSessions: number,
    private readonly closeGraceMs: number,
  ) {}

  get kernels(): KernelRegistry {
    return this.environment.kernels;
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  /** onnx.run's models loaded and cached, one per enclave image and model (at most maxModels). */
  get loadedModelCount(): number {
    return this.models.size;
  }

  /** Stops listening, ends every session (zeroising its keys and buffers) and releases cached models. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      // The server closes once every connection has, and a connection with answers still
      // unwritten closes only once they are written: cut those left after the grace.
      const stopped = new Promise<void>((resolve) => this.server.close(() => resolve()));
      const sessions = [...this.sessions];
      const ended = sessions.map((session) => { session.close(); return session.closed; });
      const cut = setTimeout(() => sessions.forEach((session) => session.destroy()), this.closeGraceMs);
      await Promise.all([stopped, ...ended]);
      clearTimeout(cut);
      this.models.close();
      await this.onnxWorker?.close();
    })();
    return this.closing;
  }

  private accept(socket: Socket): void {
    if (this.closing || this.sessions.size >= this.maxSessions) {
      const reason = this.closing ? 'the context is shutting down' : `the context serves at most ${this.maxSessions} sessions`;
      this.environment.log(`refused a connection: BUSY: ${reason}`);
      socket.on('error', () => undefined);
      socket.end(encodeControl({ t: 'error', code: 'BUSY', reason, retryAfterMs: BUSY_RETRY_MS }), () => socket.destroy());
      return;
    }
    const session = new ContextSession(socket, this.environment);
    this.sessions.add(session);
    void session.closed.then(() => this.sessions.delete(session));
  }
}

function boundAddress(address: Address, server: Server): Address {
  const bound = server.address();
  if (address.kind === 'tcp' && bound !== null && typeof bound === 'object') return { ...address, port: bound.port };
  return address;
}
