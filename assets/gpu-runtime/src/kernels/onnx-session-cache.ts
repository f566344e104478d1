/**
 * Loaded models (onnxruntime sessions) by enclave image and model digest, shared by the
 * sessions of one image: building one parses and optimises the whole model (about a second
 * for ResNet-50), so an enclave that re-handshakes after a restart and uploads the same model
 * again does not pay it twice. A session can only use an entry by holding the model's bytes
 * itself (the key is the SHA-384 of the bytes in its own buffer), so no session runs another's
 * model. Sessions of different images (a context that serves several, by PCR8 or
 * --allow-any-image) never share one: a model that loads at once would tell a session that
 * another image's enclave loaded the same bytes recently.
 *
 * Bounded: at most `maxModels` entries, least recently used evicted first; an evicted
 * model is released once no launch still uses it. A loaded model holds its weights in
 * plaintext until then, outside the per-session memory cap.
 *
 * Where models load is the `load` given: in this thread by default, in the context's onnx
 * worker thread with `egpu context --onnx-worker` (onnx-worker.ts). A model that is no longer alive (its
 * worker thread stopped) is loaded again by the next launch that needs it.
 */
import type { ComputeDevice } from './kernel';
import { LoadedModel, loadModelHere } from './onnx-model';
import type { OnnxSettings } from './onnx-runtime';

export const DEFAULT_MAX_MODELS = 4;

/** Loads a model's bytes; rejects with OperationError KERNEL_FAILED when onnxruntime refuses them. */
export type ModelLoader = (model: Uint8Array) => Promise<LoadedModel>;

interface Entry {
  readonly model: Promise<LoadedModel>;
  /** The model once loaded, to see whether it is still alive. */
  loaded?: LoadedModel;
  users: number;
  evicted: boolean;
}

/** A model in use; release() when the launch is over. */
export interface LoadedModelLease {
  readonly model: LoadedModel;
  release(): void;
}

export class OnnxSessionCache {
  private readonly entries = new Map<string, Entry>(); // in use order: least recent first

  constructor(
    private readonly settings: OnnxSettings,
    private readonly maxModels = DEFAULT_MAX_MODELS,
    private readonly load: ModelLoader = (model) => loadModelHere(model, settings),
  ) {
    if (!Number.isSafeInteger(maxModels) || maxModels < 1) throw new RangeError(`maxModels must be at least 1, got ${maxModels}`);
  }

  get size(): number {
    return this.entries.size;
  }

  /** Where this cache's models run. */
  get device(): ComputeDevice {
    return this.settings.provider === 'cuda' ? 'gpu' : 'cpu';
  }

  /**
   * The loaded model whose SHA-384 is `digest`, for sessions of enclave image `image`
   * (KernelCaller), loaded from `model` when that image has none cached (or it is no longer alive).
   */
  async acquire(image: string, digest: Buffer, model: Uint8Array): Promise<LoadedModelLease> {
    const key = `${image}/${digest.toString('hex')}`;
    let entry = this.entries.get(key);
    if (entry?.loaded !== undefined && !entry.loaded.alive) {
      this.entries.delete(key);
      this.evict(entry);
      entry = undefined;
    }
    if (entry) {
      this.entries.delete(key); // re-inserted below: now the most recent
    } else {
      const created: Entry = { model: this.load(model), users: 0, evicted: false };
      created.model.then((loaded) => { created.loaded = loaded; }, () => undefined);
      entry = created;
    }
    this.entries.set(key, entry);
    entry.users++;
    this.evictBeyondLimit();
    let loaded: LoadedModel;
    try {
      loaded = await entry.model;
    } catch (error) {
      if (this.entries.get(key) === entry) this.entries.delete(key); // let a later launch try again
      entry.users--;
      throw error;
    }
    let released = false;
    const owner = entry;
    return {
      model: loaded,
      release: () => {
        if (released) return;
        released = true;
        owner.users--;
        if (owner.evicted && owner.users === 0) void loaded.release().catch(() => undefined);
      },
    };
  }

  /** Releases every model no launch is using (the rest go when their launches end). */
  close(): void {
    for (const entry of this.entries.values()) this.evict(entry);
    this.entries.clear();
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
    if (entry.users === 0) void entry.model.then((model) => model.release()).catch(() => undefined);
  }
}
