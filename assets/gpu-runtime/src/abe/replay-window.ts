import { AbeError } from './errors';

/**
 * The replay window of one session and direction: the highest operation counter accepted so
 * far. Operations arrive in increasing n, so anything at or below it has been seen (or was
 * skipped, which is just as refusable) and is a replay. Only authenticated frames move the
 * window, so a forged header cannot push it ahead and lock the session out.
 */
export class ReplayWindow {
  private highest = -1;

  /** The highest n accepted, or -1 before the first. */
  get lastAccepted(): number {
    return this.highest;
  }

  /** Throws REPLAY unless `n` is above the last accepted counter. */
  check(n: number): void {
    if (n <= this.highest) {
      throw new AbeError('REPLAY', `operation ${n} is not above the last accepted operation ${this.highest}`);
    }
  }

  /** Records `n` as accepted (after its first frame authenticated); checks it again first. */
  accept(n: number): void {
    this.check(n);
    this.highest = n;
  }
}
