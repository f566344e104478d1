/**
 * The ciphertext SGS holds, all sessions together: frames of operations queued (whole or
 * still arriving), and frames handed to the context's socket until it has written them. Each session is capped by its partition's memoryCapBytes; this caps their sum, so
 * many sessions at their caps cannot take the host's memory. An operation that does not fit
 * is answered BUSY, like a full queue.
 */
export class CiphertextBudget {
  private used = 0;

  constructor(readonly limit: number) {}

  get bytes(): number {
    return this.used;
  }

  /** Takes `bytes` if they fit; false (nothing taken) otherwise. */
  reserve(bytes: number): boolean {
    if (this.used + bytes > this.limit) return false;
    this.used += bytes;
    return true;
  }

  release(bytes: number): void {
    this.used = Math.max(0, this.used - bytes);
  }
}
