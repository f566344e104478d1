/**
 * The journal of completed state-changing operations (malloc, htod, launch, free), in the
 * order they ran: what a new session replays to rebuild the device state an old one lost
 * when SGS or the execution context restarted. htod entries keep the enclave-side copy of
 * the data, so a replay needs nothing from the application.
 *
 * The journal is compacted as it grows, or a long-running application would replay (and
 * hold in memory) every input it ever uploaded. An entry is dropped when nothing kept needs
 * its effect: a backward liveness pass over buffer contents, from the buffers still
 * allocated to the first entry. Each entry states what it reads, what it writes and which
 * of those writes replace the whole buffer (kernel-effects.ts); the client never reuses a
 * buffer id. Where effects are uncertain they are over-stated, which keeps too much, never
 * too little. An htod writes its buffer's first `size` bytes, so the pass also tracks, per
 * buffer, the prefix a kept later htod rewrites before anything kept reads the buffer: an
 * earlier htod within that prefix is dropped (a loop uploading 64 KiB into a 1 MiB buffer
 * keeps one upload, not one per iteration).
 *
 * What compaction cannot shorten is a chain of launches that each read what the last one
 * wrote (an accumulator, `add {a, b, out: a}` over and over). The client bounds those with
 * checkpoints: checkpointCandidates() names the live buffers a kept launch wrote, the client
 * reads them back and appends each as an htod of the whole buffer, after which the chain
 * that built it is dropped.
 */
import { OperationRequest } from '../protocol/op-descriptor';

export interface StateChange {
  readonly request: Exclude<OperationRequest, { op: 'dtoh' }>;
  /** htod: the bytes, owned by the journal. */
  readonly data?: Buffer;
  /** The header digest the operation was sealed with (SHA-384 of its kernel or model, else zeros). */
  readonly digest: Buffer;
  /** htod and launch: buffers whose content it reads. */
  readonly reads?: readonly number[];
  /** htod and launch: buffers it writes. */
  readonly writes?: readonly number[];
  /** The writes that replace the whole buffer, so its earlier content no longer matters. */
  readonly overwrites?: readonly number[];
}

/** The smallest journal that is ever compacted; below it a pass is not worth its time. */
const MIN_COMPACTION_LENGTH = 16;

export class Journal {
  private entries: StateChange[] = [];
  private dataBytes = 0;
  private compactAt = MIN_COMPACTION_LENGTH;
  /** Buffers allocated and not freed, by the journal's own record. */
  private readonly live = new Set<number>();

  get length(): number {
    return this.entries.length;
  }

  /** Bytes of htod data the journal holds. */
  get bytes(): number {
    return this.dataBytes;
  }

  /** The entries to replay, oldest first. */
  get changes(): readonly StateChange[] {
    return this.entries;
  }

  /** Appends a change; returns the entries a compaction this caused dropped (usually none). */
  append(change: StateChange): StateChange[] {
    this.entries.push(change);
    this.dataBytes += change.data?.length ?? 0;
    if (change.request.op === 'malloc') this.live.add(change.request.buffer);
    if (change.request.op === 'free') this.live.delete(change.request.buffer);
    return this.entries.length >= this.compactAt ? this.compact() : [];
  }

  /** Drops every entry whose effect nothing kept needs; returns them. Linear in the journal's length. */
  compact(): StateChange[] {
    const needContent = new Set(this.live); // buffers whose content at this point is needed later
    const needExist = new Set(this.live); // buffers that must be allocated at this point
    // For a buffer in needContent: how many of its first bytes a kept htod after this point
    // writes before any kept entry reads the buffer, so their content here is not needed.
    const covered = new Map<number, number>();
    const keep = new Array<boolean>(this.entries.length).fill(false);
    const keptMallocs = new Set<number>();
    for (let i = this.entries.length - 1; i >= 0; i--) {
      const { request, reads = [], writes = [], overwrites = [] } = this.entries[i];
      if (request.op === 'malloc') {
        if (needExist.has(request.buffer)) {
          keep[i] = true;
          keptMallocs.add(request.buffer);
        }
        needExist.delete(request.buffer);
        needContent.delete(request.buffer); // a new buffer is zeros: nothing before it matters
        covered.delete(request.buffer);
      } else if (request.op === 'htod' && reads.length === 0 && writes.every((id) => id === request.buffer)) {
        // It writes the buffer's first request.size bytes: needed unless a later kept htod rewrites them all.
        const id = request.buffer;
        if (needContent.has(id) && request.size > (covered.get(id) ?? 0)) {
          keep[i] = true;
          covered.set(id, request.size);
          if (overwrites.includes(id)) {
            needContent.delete(id);
            covered.delete(id);
          }
          needExist.add(id);
        }
      } else if (request.op === 'htod' || request.op === 'launch') {
        if (writes.some((id) => needContent.has(id))) {
          keep[i] = true;
          overwrites.forEach((id) => {
            needContent.delete(id);
            covered.delete(id);
          });
          reads.forEach((id) => {
            needContent.add(id);
            covered.delete(id); // read here: all of its content matters again
          });
          [...reads, ...writes].forEach((id) => needExist.add(id));
        }
      }
      // free: kept exactly when its malloc is (below), so a replay allocates what the original did
    }
    const kept: StateChange[] = [];
    const dropped: StateChange[] = [];
    let dataBytes = 0;
    this.entries.forEach((entry, i) => {
      if (keep[i] || (entry.request.op === 'free' && keptMallocs.has(entry.request.buffer))) {
        kept.push(entry);
        dataBytes += entry.data?.length ?? 0;
      } else {
        dropped.push(entry);
      }
    });
    this.entries = kept;
    this.dataBytes = dataBytes;
    this.compactAt = Math.max(MIN_COMPACTION_LENGTH, 2 * kept.length);
    return dropped;
  }

  /**
   * The live buffers some entry's launch writes: those whose content a chain of launches may
   * have built, which a checkpoint (an htod of the whole buffer, read back from the device)
   * lets compaction drop. Call it on a compacted journal.
   */
  checkpointCandidates(): number[] {
    const written = new Set<number>();
    for (const { request, writes = [] } of this.entries) {
      if (request.op === 'launch') writes.forEach((id) => this.live.has(id) && written.add(id));
    }
    return [...written];
  }
}
