/**
 * Which session's operation goes to the context next. Round robin over the sessions that
 * have operations queued, one operation per turn, so a session that queues a hundred
 * operations does not starve one that queues one; at most `maxInFlight` operations are at
 * the context at once, and a partition has at most its GPU share of those slots (at least
 * one), as MPS caps its share of the GPU's threads. A session alone keeps the context busy
 * with several of its operations at once (pipelining); they stay in order, since each
 * session dispatches its own queue front first.
 */

export interface SchedulableSession {
  readonly partition: string;
  /** True when an operation waits in the session's queue. */
  hasQueued(): boolean;
  /** Sends the session's oldest queued operation to the context. */
  dispatchNext(): void;
}

export class FairScheduler {
  private readonly ring: SchedulableSession[] = [];
  private readonly held = new Map<SchedulableSession, number>();
  private readonly partitionInFlight = new Map<string, number>();
  private cursor = 0;
  private total = 0;
  private pumping = false;

  /**
   * @param maxInFlight operations at the context at once, all sessions together
   * @param partitionSlots each partition's most operations in flight
   */
  constructor(private readonly maxInFlight: number, private readonly partitionSlots: ReadonlyMap<string, number>) {}

  /** Slots of `maxInFlight` for a share of the GPU: at least one, so every partition progresses. */
  static slotsFor(gpuShare: number, maxInFlight: number): number {
    return Math.max(1, Math.min(maxInFlight, Math.round(gpuShare * maxInFlight)));
  }

  get inFlight(): number {
    return this.total;
  }

  add(session: SchedulableSession): void {
    if (this.held.has(session)) return;
    this.held.set(session, 0);
    this.ring.push(session);
  }

  /** Forgets a session and frees every slot it held (its operations will never complete). */
  remove(session: SchedulableSession): void {
    const held = this.held.get(session);
    if (held === undefined) return;
    this.held.delete(session);
    this.adjust(session.partition, -held);
    const index = this.ring.indexOf(session);
    this.ring.splice(index, 1);
    if (index < this.cursor) this.cursor--;
    if (this.cursor >= this.ring.length) this.cursor = 0;
    this.pump();
  }

  /** One of the session's operations completed: its slot goes to the next in turn. */
  release(session: SchedulableSession): void {
    const held = this.held.get(session);
    if (held === undefined || held === 0) return;
    this.held.set(session, held - 1);
    this.adjust(session.partition, -1);
    this.pump();
  }

  /** Dispatches while slots are free and some session has work; call when work arrives. */
  pump(): void {
    if (this.pumping) return; // a dispatch that completes synchronously comes back here
    this.pumping = true;
    try {
      while (this.total < this.maxInFlight) {
        const session = this.nextEligible();
        if (session === undefined) break;
        this.held.set(session, this.held.get(session)! + 1);
        this.adjust(session.partition, +1);
        session.dispatchNext();
      }
    } finally {
      this.pumping = false;
    }
  }

  /** The next session in turn with queued work and a free slot in its partition; advances the turn past it. */
  private nextEligible(): SchedulableSession | undefined {
    for (let step = 0; step < this.ring.length; step++) {
      const index = (this.cursor + step) % this.ring.length;
      const session = this.ring[index];
      if (session.hasQueued() && (this.partitionInFlight.get(session.partition) ?? 0) < (this.partitionSlots.get(session.partition) ?? this.maxInFlight)) {
        this.cursor = (index + 1) % this.ring.length;
        return session;
      }
    }
    return undefined;
  }

  private adjust(partition: string, delta: number): void {
    this.total += delta;
    this.partitionInFlight.set(partition, (this.partitionInFlight.get(partition) ?? 0) + delta);
  }
}
