/**
 * The EGP client: a CUDA-shaped API inside the enclave whose every byte leaves sealed.
 *
 *   const gpu = await EgpClient.connect({ sgs: 'unix:/run/egpu/sgs.sock', enclave });
 *   const a = await gpu.malloc(4096);
 *   gpu.memcpyHtoD(a, bytes);                       // calls return promises and are
 *   gpu.launchKernel('relu', { x: a, y: a, n: 1024 }); // pipelined in call order, like a
 *   const out = await gpu.memcpyDtoH(a);            // CUDA stream
 *
 * Every call completes exactly once. BUSY from SGS resends the same sealed frames later.
 * Any other failure of the session (SGS or the context restarted, a frame that does not
 * open, a silent host) starts a new session with a new handshake, replays the journal of
 * completed state-changing calls to rebuild the device state the old session lost, and then
 * sends the interrupted calls again, in call order. A call fails only when the context
 * refused it (OPERATION_FAILED), the enclave is not admitted (UNAUTHORIZED), the host stays
 * unreachable (UNAVAILABLE), it is beyond a limit or the enclave has no memory to seal it
 * (TOO_LARGE: that call alone fails, the session goes on), or the client is closed.
 *
 * The journal stays bounded for the usual loops: compaction drops what later calls made
 * irrelevant (an upload rewritten by a later one at least as long, with no read between; a
 * kernel output overwritten). A chain of launches that each read the last one's output (an
 * accumulator, `add {a, b, out: a}` in a loop) cannot be compacted: when the compacted journal
 * reaches journalCheckpointEntries, the client reads the buffers launches wrote back (a dtoh
 * of its own, pipelined with the calls) and journals each as an htod of the whole buffer, so
 * the chain behind it is dropped. A buffer whose size a kernel may have changed, or that
 * would take the journal past maxJournalBytes, is not checkpointed; if the journal still
 * reaches maxJournalEntries, a call that would add to it fails TOO_LARGE until buffers are
 * freed (checked when the call is made: calls already made may take it a little beyond).
 */
import type { AesGcmBackend } from '../abe/aes-gcm';
import { ZERO_DIGEST } from '../abe/frame-header';
import type { EnclaveIdentity } from '../abe/handshake';
import { MAX_BUFFER_ID, MAX_CHUNK_BYTES } from '../abe/limits';
import { BUILTIN_KERNELS } from '../kernels/builtins';
import { MAX_BUFFER_BYTES, OperationRequest } from '../protocol/op-descriptor';
import { Address, parseAddress } from '../protocol/transport';
import { WireError } from '../protocol/wire-error';
import { RuntimeError } from '../errors';
import { BufferPool } from '../buffer-pool';
import { EgpError } from './errors';
import { Journal, StateChange } from './journal';
import { UploadCopy } from './upload-copy';
import { KernelArgsInput, toKernelArgs } from './kernel-args';
import { launchEffects } from './kernel-effects';
import { BufferRecord, launchDigest } from './kernel-digests';
import { DoneReport, Operation, OperationOrigin, OperationOutcome, OperationSpec } from './operation';
import { HostError, LinkEvents, SealRefused, SessionLink } from './session-link';
import { OperationTiming } from './timing';

export interface EgpLimits {
  /** Operations sent and not yet answered. */
  readonly maxInFlightOps: number;
  /** Sealed bytes sent and not yet answered (one operation larger than this still goes, alone). */
  readonly maxInFlightBytes: number;
  /** Calls waiting for room in the pipeline; beyond it a call fails TOO_LARGE at once. */
  readonly maxQueuedOps: number;
  /** htod data the replay journal may hold, after compaction. */
  readonly maxJournalBytes: number;
  /**
   * Entries the replay journal may hold, after compaction and checkpoints: a malloc, htod or
   * launch made while it holds this many fails TOO_LARGE (free still goes).
   */
  readonly maxJournalEntries: number;
  /** The journal's length, after compaction, at which the client checkpoints buffers that chains of launches built. */
  readonly journalCheckpointEntries: number;
  /**
   * Data chunk size of htod frames (at most 1 MiB). Smaller chunks overlap sealing here,
   * relaying in SGS (which forwards each frame as it arrives) and opening at the context.
   */
  readonly chunkBytes: number;
  readonly handshakeTimeoutMs: number;
  /** No answer for this long while calls are outstanding: the session is presumed dead. */
  readonly idleTimeoutMs: number;
  /** How long reconnecting may keep failing before the outstanding calls fail UNAVAILABLE. */
  readonly reconnectTimeoutMs: number;
  readonly reconnectDelayMs: number;
  readonly maxReconnectDelayMs: number;
  /** Sessions one call may take before it fails UNAVAILABLE (a call that kills every context it reaches). */
  readonly maxAttempts: number;
  /** Memory kept for reuse (upload copies, sealed frames): fresh large buffers cost page faults. */
  readonly poolBytes: number;
}

/**
 * 128 KiB: a 600 KB tensor goes as five frames, each relayed and opened while the next is
 * sealed; the cost per frame (a key stream, a tag, about 100 bytes of header) stays small.
 */
export const DEFAULT_CHUNK_BYTES = 128 * 1024;

export const DEFAULT_LIMITS: EgpLimits = {
  maxInFlightOps: 32,
  maxInFlightBytes: 64 * 1024 * 1024,
  maxQueuedOps: 65_536,
  maxJournalBytes: 4 * 1024 * 1024 * 1024,
  maxJournalEntries: 65_536,
  journalCheckpointEntries: 1_024,
  chunkBytes: DEFAULT_CHUNK_BYTES,
  handshakeTimeoutMs: 30_000,
  idleTimeoutMs: 120_000,
  reconnectTimeoutMs: 60_000,
  reconnectDelayMs: 10,
  maxReconnectDelayMs: 1_000,
  maxAttempts: 8,
  poolBytes: 64 * 1024 * 1024,
};

/** What the client tells an observer (the demo's latency breakdown, tests). */
export interface EgpObserver {
  /** A call settled successfully. */
  operation?(event: { readonly seq: number; readonly request: OperationRequest; readonly timing: OperationTiming; readonly done?: DoneReport }): void;
  /** A session was established; `replayed` journal entries are being sent again in it. */
  session?(event: { readonly sessionId: Buffer; readonly reconnect: boolean; readonly replayed: number }): void;
  /** A session ended on an error (the client reconnects unless it is fatal). */
  lost?(error: WireError): void;
  /** SGS's queue for this session was full: the call is resent unchanged after retryAfterMs. */
  busy?(event: { readonly n: number; readonly retryAfterMs: number }): void;
}

export interface EgpConnectOptions {
  /** SGS's address for enclaves: unix:/path or tcp:host:port locally (vsock:3:port in production). */
  readonly sgs: string | Address;
  /** The enclave's attester, PCR0-2 and KMS public key (abe/handshake.ts). */
  readonly enclave: EnclaveIdentity;
  /** SHA-384 of each built-in kernel's code, by name (default: BUILTIN_KERNELS, the context's own). */
  readonly kernelDigests?: ReadonlyMap<string, Buffer>;
  readonly limits?: Partial<EgpLimits>;
  readonly backend?: AesGcmBackend;
  readonly observer?: EgpObserver;
  /**
   * Where upload copies and sealed frames are reused from: clients in one process may share
   * one, which then bounds their pooled memory together (the daemon does). Default: a pool
   * of the client's own, of limits.poolBytes.
   */
  readonly pool?: BufferPool;
}

export interface LaunchResult {
  readonly kernel: string;
  /** What the context reports it ran (from {t: done}); the header digest when no report came. */
  readonly codeSha384: Buffer;
  readonly computeUs: number;
  readonly queueUs: number;
  readonly timing: OperationTiming;
}

export class EgpClient {
  /** Connects (retrying for up to reconnectTimeoutMs while SGS is not reachable) and completes the handshake. */
  static async connect(options: EgpConnectOptions): Promise<EgpClient> {
    const client = new EgpClient(options);
    await client.reconnect(false);
    if (client.link === undefined) {
      client.close();
      throw client.lastConnectError ?? new EgpError('UNAVAILABLE', 'no session could be established');
    }
    return client;
  }

  private readonly limits: EgpLimits;
  private readonly address: Address;
  private readonly kernelDigests: ReadonlyMap<string, Buffer>;
  private link?: SessionLink;
  private connecting?: Promise<void>;
  private lastConnectError?: Error;
  /** Calls (and journal replays) waiting to be sent, in order. */
  private queue: Operation[] = [];
  private inFlightBytes = 0;
  /**
   * Operations the client lets be outstanding now: maxInFlightOps, halved at each BUSY and
   * grown back by one per window's worth of answers (additive increase, multiplicative
   * decrease), so a pipeline deeper than SGS's queue settles at what SGS takes instead of
   * being refused and resent over and over.
   */
  private window: number;
  private readonly unsettled = new Set<Operation>();
  private readonly buffers = new Map<number, BufferRecord>();
  private readonly journal = new Journal();
  /** The journal length at which the next checkpoint is considered. */
  private checkpointAt: number;
  /** Checkpoint dtohs queued or sent and not answered (a new round starts once none is left). */
  private readonly checkpoints = new Set<Operation>();
  private readonly pool: BufferPool;
  private nextSeq = 1;
  private nextBufferId = 1;
  private closedBy?: EgpError;

  private constructor(private readonly options: EgpConnectOptions) {
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.pool = options.pool ?? new BufferPool({ maxBytes: this.limits.poolBytes });
    this.window = this.limits.maxInFlightOps;
    this.checkpointAt = this.limits.journalCheckpointEntries;
    if (!(this.limits.chunkBytes >= 1 && this.limits.chunkBytes <= MAX_CHUNK_BYTES)) {
      throw new EgpError('INVALID_ARGUMENT', `chunkBytes must be 1 to ${MAX_CHUNK_BYTES}`);
    }
    this.address = typeof options.sgs === 'string' ? parseAddress(options.sgs) : options.sgs;
    this.kernelDigests = options.kernelDigests ?? new Map(Object.values(BUILTIN_KERNELS).map((kernel) => [kernel.name, kernel.digest]));
  }

  /** The current session's id (it changes when the client reconnects). */
  get sessionId(): Buffer | undefined {
    return this.link?.sessionId;
  }

  /** Entries the journal would replay now (after compaction). */
  get journalLength(): number {
    return this.journal.length;
  }

  /** Allocates a device buffer of `size` bytes; resolves to its id. */
  async malloc(size: number): Promise<number> {
    if (!Number.isSafeInteger(size) || size < 0 || size > MAX_BUFFER_BYTES) {
      throw new EgpError('INVALID_ARGUMENT', `a buffer is 0 to ${MAX_BUFFER_BYTES} bytes, got ${size}`);
    }
    if (this.nextBufferId > MAX_BUFFER_ID) throw new EgpError('TOO_LARGE', 'this client has used every buffer id');
    this.checkJournalRoom();
    const buffer = this.nextBufferId++;
    const request: OperationRequest = { op: 'malloc', buffer, size };
    this.buffers.set(buffer, { size });
    const op = this.enqueue({ request, digest: ZERO_DIGEST, change: { request, digest: ZERO_DIGEST } });
    try {
      await op.promise;
    } catch (error) {
      this.buffers.delete(buffer);
      throw error;
    }
    return buffer;
  }

  /**
   * Copies `bytes` into device buffer `buffer`. As with cudaMemcpyAsync, `bytes` must not
   * change until the returned promise settles: they are sealed where they are, and the
   * client's own copy (for the replay journal) is made once they are on their way.
   */
  async memcpyHtoD(buffer: number, bytes: Uint8Array): Promise<void> {
    const record = this.bufferRecord(buffer);
    if (record.size !== undefined && bytes.length > record.size) {
      throw new EgpError('INVALID_ARGUMENT', `buffer ${buffer} holds ${record.size} bytes, not ${bytes.length}`);
    }
    this.checkJournalRoom();
    if (this.journal.bytes + bytes.length > this.limits.maxJournalBytes) {
      this.recycle(this.journal.compact());
      if (this.journal.bytes + bytes.length > this.limits.maxJournalBytes) {
        throw new EgpError('TOO_LARGE', `the replay journal would hold more than ${this.limits.maxJournalBytes} bytes; free buffers no longer needed`);
      }
    }
    const upload = new UploadCopy(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length), this.pool);
    const request: OperationRequest = { op: 'htod', buffer, size: bytes.length };
    // htod writes the buffer's first bytes: it replaces the whole buffer only when it covers it.
    const overwrites = bytes.length === record.size ? [buffer] : [];
    const change: StateChange = { request, digest: ZERO_DIGEST, writes: [buffer], overwrites };
    const queued = this.enqueue({ request, digest: ZERO_DIGEST, upload, change });
    // Only once the upload is queued (enqueue throws when the client is closed or full) does the record describe it.
    record.upload = upload;
    record.digest = undefined;
    await queued.promise;
  }

  /**
   * Launches a kernel. `args` are unsigned integers, texts and lists of them; buffer ids are
   * integers. The digest sealed into the headers is the kernel's: a built-in's from
   * kernelDigests, onnx.run's the SHA-384 of the model uploaded into its `model` buffer, or
   * `options.digest`.
   */
  async launchKernel(kernel: string, args: KernelArgsInput, options: { digest?: Uint8Array } = {}): Promise<LaunchResult> {
    if (typeof kernel !== 'string' || kernel.length === 0 || kernel.length > 64) {
      throw new EgpError('INVALID_ARGUMENT', 'a kernel name is 1 to 64 characters');
    }
    const kernelArgs = toKernelArgs(args);
    this.checkJournalRoom();
    const digest = launchDigest(kernel, kernelArgs, this.kernelDigests, this.buffers, options.digest);
    const request: OperationRequest = { op: 'launch', kernel, args: kernelArgs };
    const { reads, writes, overwrites, resizes } = launchEffects(kernel, kernelArgs, this.buffers, (id) => this.buffers.get(id)?.size);
    const change: StateChange = { request, digest, reads, writes, overwrites };
    const queued = this.enqueue({ request, digest, change });
    for (const id of resizes) this.buffers.get(id)!.size = undefined; // once queued, as for an upload
    const outcome = await queued.promise;
    const done = outcome.done;
    return {
      kernel,
      codeSha384: done?.codeSha384 ?? digest,
      computeUs: done?.computeUs ?? 0,
      queueUs: done?.queueUs ?? 0,
      timing: outcome.timing,
    };
  }

  /**
   * The size of buffer `buffer` as this client knows it: undefined when it is not allocated,
   * or a kernel launched since its malloc may have resized it (onnx.run's outputs, any kernel
   * this client has no effects for).
   */
  knownSize(buffer: number): number | undefined {
    return this.buffers.get(buffer)?.size;
  }

  /** Copies device buffer `buffer` back into the enclave. */
  async memcpyDtoH(buffer: number): Promise<Buffer> {
    const record = this.bufferRecord(buffer);
    const outcome: OperationOutcome = await this.enqueue({ request: { op: 'dtoh', buffer }, digest: ZERO_DIGEST, maxOutputBytes: record.size ?? MAX_BUFFER_BYTES }).promise;
    return outcome.output ?? Buffer.alloc(0);
  }

  async free(buffer: number): Promise<void> {
    this.bufferRecord(buffer);
    this.buffers.delete(buffer); // later calls naming it fail here, at once
    const request: OperationRequest = { op: 'free', buffer };
    await this.enqueue({ request, digest: ZERO_DIGEST, change: { request, digest: ZERO_DIGEST } }).promise;
  }

  /**
   * Waits until every call made before it has settled. Rejects with the first error among
   * them (as cudaDeviceSynchronize reports errors of asynchronous work), even when the caller
   * already saw it at the call's own promise.
   */
  async synchronize(): Promise<void> {
    const pending = [...this.unsettled].map((op) => op.promise);
    const results = await Promise.allSettled(pending);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /** Ends the session; calls not yet settled fail CLOSED. */
  close(): void {
    if (this.closedBy) return;
    this.closedBy = new EgpError('CLOSED', 'the EGP client was closed');
    this.failEverything(this.closedBy);
  }

  /** Refuses a state-changing call while the journal (compacted) holds maxJournalEntries entries. */
  private checkJournalRoom(): void {
    if (this.journal.length < this.limits.maxJournalEntries) return;
    this.recycle(this.journal.compact());
    if (this.journal.length >= this.limits.maxJournalEntries) {
      throw new EgpError('TOO_LARGE', `the replay journal holds ${this.journal.length} entries (maxJournalEntries), which neither compaction nor checkpoints could shorten; free buffers no longer needed`);
    }
  }

  private bufferRecord(buffer: number): BufferRecord {
    const record = this.buffers.get(buffer);
    if (record === undefined) throw new EgpError('INVALID_ARGUMENT', `buffer ${buffer} is not allocated by this client`);
    return record;
  }

  private enqueue(spec: OperationSpec, origin: OperationOrigin = 'app'): Operation {
    if (this.closedBy) throw this.closedBy;
    if (this.queue.length >= this.limits.maxQueuedOps) {
      throw new EgpError('TOO_LARGE', `${this.limits.maxQueuedOps} calls are already waiting; await some first`);
    }
    const op = new Operation(origin === 'app' ? this.nextSeq++ : 0, origin, spec);
    if (origin === 'app') {
      this.unsettled.add(op);
      const settle = () => this.unsettled.delete(op);
      op.promise.then(settle, settle);
    }
    this.queue.push(op);
    if (this.link === undefined) this.reconnect(true);
    else this.pump();
    return op;
  }

  /** Sends queued calls while the pipeline has room. */
  private pump(): void {
    const link = this.link;
    if (link === undefined || !link.isOpen) return;
    while (this.queue.length > 0 && this.link === link && link.isOpen) {
      const op = this.queue[0];
      const busy = link.outstanding > 0;
      if (busy && link.outstanding >= Math.floor(this.window)) return;
      if (busy && this.inFlightBytes + (op.data?.length ?? 0) > this.limits.maxInFlightBytes) return;
      this.queue.shift();
      try {
        link.send(op);
      } catch (error) {
        if (!(error instanceof SealRefused)) {
          // The session ended under it, with the operation among the unanswered it reported (in
          // order): the next session sends it again after the replay, or the journal regenerates it.
          return;
        }
        // Sealing refused the call itself (its descriptor beyond a limit, no memory for its
        // frames) before its operation number was used: the session is unharmed.
        const { refusal } = error;
        const tooLarge = refusal instanceof WireError && refusal.code === 'TOO_LARGE';
        const failure = new EgpError(tooLarge ? 'TOO_LARGE' : 'INVALID_ARGUMENT', `${op.describe()}: ${refusal instanceof RuntimeError ? refusal.reason : refusal.message}`);
        if (op.origin === 'replay') {
          this.failEverything(new EgpError('REPLAY_FAILED', `rebuilding device state in a new session: ${failure.message}`));
          return;
        }
        op.reject(failure);
        continue;
      }
      this.inFlightBytes += op.wireBytes;
      const upload = op.spec.upload;
      if (upload) setImmediate(() => upload.copy()); // while the host works on it
    }
  }

  private linkEvents(): LinkEvents {
    return {
      answered: (op) => {
        this.inFlightBytes -= op.wireBytes;
        const ok = op.result?.ok === true;
        if (op.origin === 'replay' && !ok) {
          this.failEverything(new EgpError('REPLAY_FAILED', `rebuilding device state in a new session: ${op.describe()} was refused`));
          return;
        }
        this.window = Math.min(this.limits.maxInFlightOps, this.window + 1 / this.window);
        const space = op.takeSpace();
        if (space) this.pool.release(space);
        const change = op.spec.change;
        if (op.origin === 'checkpoint') {
          this.checkpointed(op, ok);
        } else if (op.origin === 'app' && ok && change) {
          this.recycle(this.journal.append(op.spec.upload ? { ...change, data: op.spec.upload.copy() } : change));
          this.checkpoint();
        }
        this.pump();
      },
      finished: (op, done) => {
        if (op.origin !== 'app') return;
        const timing = op.resolve(done);
        if (timing && op.result?.ok) this.options.observer?.operation?.({ seq: op.seq, request: op.request, timing, done });
      },
      lost: (error, unanswered) => this.onLost(error, unanswered),
      busy: (n, retryAfterMs) => {
        this.window = Math.max(1, this.window / 2);
        this.options.observer?.busy?.({ n, retryAfterMs });
      },
    };
  }

  private onLost(error: WireError, unanswered: Operation[]): void {
    this.link = undefined;
    this.inFlightBytes = 0;
    this.options.observer?.lost?.(error);
    for (const op of unanswered) op.abandonAttempt();
    // Replays are regenerated from the journal in the next session; calls go again after them.
    const retry = [...unanswered, ...this.queue].filter((op) => op.origin === 'app');
    this.queue = [];
    this.checkpoints.clear(); // the next journaled call starts another round
    // An operation beyond the partition's cap is refused TOO_LARGE whatever the session: it fails alone.
    const tooLarge = error instanceof HostError && error.code === 'TOO_LARGE' ? unanswered.find((op) => op.n === error.n) : undefined;
    for (const op of retry) {
      if (op === tooLarge) {
        op.reject(new EgpError('TOO_LARGE', `${op.describe()}: ${error.reason}`));
      } else if (op.timing.attempts >= this.limits.maxAttempts) {
        op.reject(new EgpError('UNAVAILABLE', `${op.describe()}: its session ended ${op.timing.attempts} times (last: ${error.code}: ${error.reason})`));
      } else {
        this.queue.push(op);
      }
    }
    if (error.code === 'UNAUTHORIZED') {
      this.failEverything(new EgpError('UNAUTHORIZED', error.reason));
      return;
    }
    this.reconnect(true);
  }

  /**
   * Establishes a new session, retrying with back-off for up to reconnectTimeoutMs; then
   * queues the journal's replay ahead of the waiting calls. When it gives up, the waiting
   * calls fail UNAVAILABLE and the next call tries again.
   */
  private reconnect(isReconnect: boolean): Promise<void> {
    if (this.connecting || this.closedBy || this.link) return this.connecting ?? Promise.resolve();
    this.connecting = this.establish(isReconnect).finally(() => {
      this.connecting = undefined;
      // The new session may have ended already, while its replay was being sent (onLost could
      // not start another while this one was connecting): start the next one for what waits.
      if (this.link === undefined && !this.closedBy && this.queue.length > 0) void this.reconnect(true);
    });
    return this.connecting;
  }

  private async establish(isReconnect: boolean): Promise<void> {
    const deadline = Date.now() + this.limits.reconnectTimeoutMs;
    let delay = this.limits.reconnectDelayMs;
    while (!this.closedBy) {
      try {
        const link = await SessionLink.open({
          address: this.address,
          enclave: this.options.enclave,
          handshakeTimeoutMs: this.limits.handshakeTimeoutMs,
          idleTimeoutMs: this.limits.idleTimeoutMs,
          chunkBytes: this.limits.chunkBytes,
          backend: this.options.backend,
          allocate: (size) => this.pool.acquire(size),
        }, this.linkEvents());
        if (this.closedBy) {
          link.close();
          return;
        }
        this.link = link;
        const replays = this.journal.changes.map((change) => new Operation(0, 'replay', { request: change.request, digest: change.digest, data: change.data }));
        this.queue.unshift(...replays);
        this.options.observer?.session?.({ sessionId: link.sessionId, reconnect: isReconnect, replayed: replays.length });
        this.pump();
        return;
      } catch (error) {
        this.lastConnectError = error as Error;
        if (error instanceof WireError && error.code === 'UNAUTHORIZED') {
          this.lastConnectError = new EgpError('UNAUTHORIZED', error.reason);
          this.failEverything(this.lastConnectError as EgpError);
          return;
        }
        if (Date.now() + delay > deadline) {
          const reason = `no session with SGS for ${this.limits.reconnectTimeoutMs} ms (last: ${(error as Error).message})`;
          this.lastConnectError = new EgpError('UNAVAILABLE', reason);
          for (const op of this.queue.splice(0)) op.reject(this.lastConnectError);
          return;
        }
        // SGS at its session limit answers BUSY with the time to wait: honour it (within the back-off's cap).
        const wait = error instanceof WireError && error.code === 'BUSY' && error.retryAfterMs !== undefined
          ? Math.min(Math.max(delay, error.retryAfterMs), this.limits.maxReconnectDelayMs)
          : delay;
        await new Promise((resolve) => setTimeout(resolve, wait));
        delay = Math.min(2 * delay, this.limits.maxReconnectDelayMs);
      }
    }
  }

  /**
   * Once the compacted journal reaches checkpointAt: reads back the live buffers launches
   * wrote (smallest first, as many as maxJournalBytes leaves room for), to journal each as an
   * htod of the whole buffer. The dtohs go ahead of the calls still queued, right behind
   * those already sent: each is answered after every journaled change before it and before
   * any after it, so its htod takes its place in the journal and a replay rebuilds the same
   * memory. Only buffers whose size the client knows (no kernel may have resized them) are
   * read, so the htod covers the buffer exactly.
   */
  private checkpoint(): void {
    if (this.journal.length < this.checkpointAt || this.checkpoints.size > 0) return;
    this.recycle(this.journal.compact());
    const threshold = this.limits.journalCheckpointEntries;
    if (this.journal.length < threshold) {
      this.checkpointAt = threshold;
      return;
    }
    let room = this.limits.maxJournalBytes - this.journal.bytes;
    const candidates = this.journal.checkpointCandidates()
      .map((buffer) => ({ buffer, size: this.buffers.get(buffer)?.size }))
      .filter((c): c is { buffer: number; size: number } => c.size !== undefined && c.size > 0)
      .sort((a, b) => a.size - b.size);
    const reads: Operation[] = [];
    // Each read-back's bytes become a journal entry, which goes back to the pool when compaction drops it.
    const allocateOutput = (bytes: number) => this.pool.acquire(bytes);
    for (const { buffer, size } of candidates) {
      if (size > room) break;
      room -= size;
      reads.push(new Operation(0, 'checkpoint', { request: { op: 'dtoh', buffer }, digest: ZERO_DIGEST, maxOutputBytes: size, allocateOutput }));
    }
    if (reads.length === 0) {
      this.checkpointAt = 2 * this.journal.length; // nothing to read back now: try again when it has doubled
      return;
    }
    reads.forEach((op) => this.checkpoints.add(op));
    const at = this.queue.findIndex((op) => op.origin !== 'replay');
    this.queue.splice(at < 0 ? this.queue.length : at, 0, ...reads);
  }

  /** A checkpoint's dtoh was answered: its bytes go into the journal as an htod of the whole buffer. */
  private checkpointed(op: Operation, ok: boolean): void {
    this.checkpoints.delete(op);
    const { request } = op;
    const output = op.output;
    if (ok && request.op === 'dtoh' && output !== undefined && output.length === op.spec.maxOutputBytes) {
      const htod: OperationRequest = { op: 'htod', buffer: request.buffer, size: output.length };
      this.recycle(this.journal.append({ request: htod, data: output, digest: ZERO_DIGEST, writes: [request.buffer], overwrites: [request.buffer] }));
    }
    if (this.checkpoints.size > 0) return;
    this.recycle(this.journal.compact());
    // Where the round did not shorten it enough (buffers it could not read back), wait for it to double.
    this.checkpointAt = Math.max(this.limits.journalCheckpointEntries, 2 * this.journal.length);
  }

  /**
   * Returns the upload copies of dropped journal entries to the pool, unless something may
   * still read them: a replay not yet sealed, or the buffer record (onnx.run's model digest).
   */
  private recycle(dropped: readonly StateChange[]): void {
    if (dropped.length === 0 || this.queue.some((op) => op.origin === 'replay')) return;
    for (const change of dropped) {
      if (change.data === undefined || change.request.op !== 'htod') continue;
      if (this.buffers.get(change.request.buffer)?.upload?.owns(change.data)) continue;
      this.pool.release(change.data);
    }
  }

  /** A failure no retry can mend (or close()): every call not settled fails with it. */
  private failEverything(error: EgpError): void {
    this.closedBy ??= error;
    const unanswered = this.link?.close() ?? [];
    this.link = undefined;
    for (const op of [...unanswered, ...this.queue.splice(0), ...this.unsettled]) op.reject(error);
  }
}
