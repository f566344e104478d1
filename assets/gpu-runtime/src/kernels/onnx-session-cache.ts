/**
 * onnxruntime InferenceSessions by model digest, shared by all sessions of a context:
 * building one parses and optimises the whole model (about a second for ResNet-50), so an
 * enclave that re-handshakes after a restart and uploads the same model again does not pay
 * it twice. A session can only use an entry by holding the model's bytes itself (the key is
 * the SHA-384 of the bytes in its own buffer), so sharing reveals nothing across enclaves.
 *
 * Bounded: at most `maxModels` entries, least recently used evicted first; an evicted
 * session is released once no launch still uses it. The cached InferenceSession holds the
 * model's weights in plaintext until then, outside the per-session memory cap.
 */
import { OnnxSession, OnnxSettings, loadOnnxRuntime, onnxSessionOptions } from './onnx-runtime';
import type { ComputeDevice } from './kernel';
import { OperationError } from './operation-error';

export const DEFAULT_MAX_MODELS = 4;

interface Entry {
  readonly session: Promise<OnnxSession>;
  users: number;
  evicted: boolean;
}

/** A session in use; release() when the launch is over. */
export interface OnnxSessionLease {
  readonly session: OnnxSession;
  release(): void;
}

export class OnnxSessionCache {
  private readonly entries = new Map<string, Entry>(); // in use order: least recent first

  constructor(private readonly settings: OnnxSettings, private readonly maxModels = DEFAULT_MAX_MODELS) {
    if (!Number.isSafeInteger(maxModels) || maxModels < 1) throw new RangeError(`maxModels must be at least 1, got ${maxModels}`);
  }

  get size(): number {
    return this.entries.size;
  }

  /** Where this cache's sessions run their models. */
  get device(): ComputeDevice {
    return this.settings.provider === 'cuda' ? 'gpu' : 'cpu';
  }

  /** The session of the model whose SHA-384 is `digest`, built from `model` when not cached. */
  async acquire(digest: Buffer, model: Uint8Array): Promise<OnnxSessionLease> {
    const key = digest.toString('hex');
    let entry = this.entries.get(key);
    if (entry) {
      this.entries.delete(key); // re-inserted below: now the most recent
    } else {
      entry = { session: this.create(model), users: 0, evicted: false };
    }
    this.entries.set(key, entry);
    entry.users++;
    this.evictBeyondLimit();
    let session: OnnxSession;
    try {
      session = await entry.session;
    } catch (error) {
      if (this.entries.get(key) === entry) this.entries.delete(key); // let a later launch try again
      entry.users--;
      throw error;
    }
    let released = false;
    return {
      session,
      release: () => {
        if (released) return;
        released = true;
        entry.users--;
        if (entry.evicted && entry.users === 0) void session.release().catch(() => undefined);
      },
    };
  }

  /** Releases every session no launch is using (the rest go when their launches end). */
  close(): void {
    for (const entry of this.entries.values()) this.evict(entry);
    this.entries.clear();
  }

  private async create(model: Uint8Array): Promise<OnnxSession> {
    try {
      const ort = await loadOnnxRuntime();
      return await ort.InferenceSession.create(model, onnxSessionOptions(this.settings));
    } catch (error) {
      throw new OperationError('KERNEL_FAILED', `onnxruntime refused the model: ${(error as Error).message}`);
    }
  }

  private evictBeyondLimit(): void {
    for (const [key, entry] of this.entries) {
      if (this.entries.size <= this.maxModels) return;
      this.entries.delete(key);
      this.evict(entry);
    }
  }

  private evict(entry: Entry): void {
    entry.evicted = true;
    if (entry.users === 0) void entry.session.then((s) => s.release()).catch(() => undefined);
  }
}
