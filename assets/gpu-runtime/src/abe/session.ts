/**
 * One ABE session, as both ends hold it after the handshake: the session id, the session
 * key, and the per-direction counters that keep every K_n single-use.
 *
 * Sending: at most one FrameSealer per (n, direction), n strictly increasing, so no nonce
 * repeats under any K_n. Receiving: a FrameOpener per operation, checked against the
 * direction's replay window. The same n serves both directions (a launch's inputs go one
 * way, its results come back the other) because the nonce carries the direction.
 *
 * K_n is therefore needed twice per operation, once per direction: the first derivation
 * keeps a copy for the second (an HKDF costs as much as sealing a small frame). A copy lives
 * only while its operation is under way: the sealer or opener it was derived for zeroises it
 * too when it fails or is aborted before completing (a completed direction leaves it for the
 * other one). At most MAX_PENDING_KEYS are kept (the oldest is zeroised and derived again if
 * asked for), and close() zeroises what is left.
 */
import { AesGcmBackend } from './aes-gcm';
import { AbeError } from './errors';
import { FrameOpener, FrameSealer } from './frame';
import { Direction, checkDirection } from './frame-header';
import { SESSION_ID_BYTES, SESSION_KEY_BYTES, deriveOperationKey } from './key-schedule';
import { ReplayWindow } from './replay-window';

/** Operation keys kept for their second direction: more than a pipeline holds in flight. */
const MAX_PENDING_KEYS = 64;

export class AbeSession {
  private readonly lastSealed: [number, number] = [-1, -1];
  /** K_n derived for one direction and not yet taken by the other, oldest first. */
  private readonly pendingKeys = new Map<number, Buffer>();
  private readonly windows: [ReplayWindow, ReplayWindow] = [new ReplayWindow(), new ReplayWindow()];
  private closed = false;

  /**
   * @param sessionId the 16 bytes of the context's hello
   * @param sessionKey the derived session key; the session owns it and zeroises it on close()
   * @param backend the AES-GCM implementation for its frames (default: the active one)
   */
  constructor(
    readonly sessionId: Buffer,
    private readonly sessionKey: Buffer,
    private readonly backend?: AesGcmBackend,
  ) {
    if (sessionId.length !== SESSION_ID_BYTES || sessionKey.length !== SESSION_KEY_BYTES) {
      sessionKey.fill(0);
      throw new AbeError('INVALID_ARGUMENT', `a session needs a ${SESSION_ID_BYTES}-byte id and a ${SESSION_KEY_BYTES}-byte key`);
    }
  }

  /** The sealer of operation n in direction `dir`; refuses (NONCE_REUSE) an n not above the last sealed. */
  sealer(n: number, dir: Direction, digest: Buffer): FrameSealer {
    this.ensureOpen();
    checkDirection(dir);
    if (n <= this.lastSealed[dir]) {
      throw new AbeError('NONCE_REUSE', `operation ${n} is not above the last sealed operation ${this.lastSealed[dir]} in direction ${dir}`);
    }
    const { key, onFailure } = this.operationKey(n);
    const sealer = new FrameSealer({ key, onFailure, session: this.sessionId, n, dir, digest, backend: this.backend });
    this.lastSealed[dir] = n;
    return sealer;
  }

  /** The opener of operation n in direction `dir`; refuses (REPLAY) an n not above the last accepted. */
  opener(n: number, dir: Direction, digest: Buffer): FrameOpener {
    this.ensureOpen();
    const window = this.windows[checkDirection(dir)];
    window.check(n); // before deriving a key for nothing
    const { key, onFailure } = this.operationKey(n);
    return new FrameOpener({ key, onFailure, session: this.sessionId, n, dir, digest, window, backend: this.backend });
  }

  /** How many copies of K_n the session holds for a second direction (for tests and diagnostics). */
  get keptKeys(): number {
    return this.pendingKeys.size;
  }

  /** Zeroises the session key. Operations already created keep their own K_n until they end. */
  close(): void {
    this.closed = true;
    this.sessionKey.fill(0);
    for (const key of this.pendingKeys.values()) key.fill(0);
    this.pendingKeys.clear();
  }

  /**
   * K_n for a sealer or opener, which owns (and zeroises) the Buffer returned: the copy kept
   * by the other direction's earlier derivation, or a new derivation that keeps a copy. With
   * it the operation's onFailure, which zeroises whatever copy of K_n is still kept: an
   * operation that failed needs no answer (and one derived again costs only an HKDF).
   */
  private operationKey(n: number): { key: Buffer; onFailure: () => void } {
    const onFailure = () => this.dropKeptKey(n);
    const kept = this.pendingKeys.get(n);
    if (kept !== undefined) {
      this.pendingKeys.delete(n);
      return { key: kept, onFailure };
    }
    const key = deriveOperationKey(this.sessionKey, n);
    if (this.pendingKeys.size >= MAX_PENDING_KEYS) {
      const [oldest, oldestKey] = this.pendingKeys.entries().next().value as [number, Buffer];
      oldestKey.fill(0);
      this.pendingKeys.delete(oldest);
    }
    this.pendingKeys.set(n, Buffer.from(key));
    return { key, onFailure };
  }

  private dropKeptKey(n: number): void {
    const kept = this.pendingKeys.get(n);
    if (kept === undefined) return;
    kept.fill(0);
    this.pendingKeys.delete(n);
  }

  private ensureOpen(): void {
    if (this.closed) throw new AbeError('CLOSED', 'the session is closed; its key is gone');
  }
}
