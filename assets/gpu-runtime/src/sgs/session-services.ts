/**
 * What every session of one SGS shares: its configuration, the scheduler, the metrics, the
 * kernel-attestation log, and the server's bookkeeping.
 */
import { CiphertextBudget } from './ciphertext-budget';
import { SgsConfig } from './config';
import { FairScheduler } from './fair-scheduler';
import { KernelAttestationLog } from './kernel-attestation-log';
import { MetricRecorder } from './metrics/metric-recorder';
import type { SgsSession } from './session';

export interface SessionServices {
  readonly config: SgsConfig;
  readonly scheduler: FairScheduler;
  /** Ciphertext held, all sessions together (maxBufferedBytes). */
  readonly budget: CiphertextBudget;
  readonly metrics: MetricRecorder;
  readonly kernelLog: KernelAttestationLog;
  /** The EnclaveImage values of the allowlist: where attestation failures are counted. */
  readonly servedImages: readonly string[];
  /** Operator log lines (stderr): no key, no plaintext ever reaches them, and SGS has neither. */
  log(line: string): void;
  sessionClosed(session: SgsSession): void;
}
