/**
 * The baseline: `openssl speed -evp aes-256-gcm` on one core, run as a child process in the
 * same benchmark run so both figures come from the same machine in the same state.
 */
import { spawnSync } from 'node:child_process';

/** OpenSSL's AES-256-GCM throughput at `bytes` per call, in GB/s; undefined without an openssl binary. */
export function opensslSpeed(bytes: number, seconds = 1): number | undefined {
  const result = spawnSync('openssl', ['speed', '-evp', 'aes-256-gcm', '-bytes', String(bytes), '-seconds', String(seconds)], { encoding: 'utf8' });
  if (result.error || result.status !== 0) return undefined;
  return parseSpeedTable(result.stdout);
}

/**
 * Reads the single figure of the table that follows "The 'numbers' are in 1000s of bytes
 * per second processed.": a "type" line with the block size, then the cipher's row, whose
 * last column is e.g. "5592776.70k" (thousands of bytes per second).
 */
export function parseSpeedTable(stdout: string): number {
  const lines = stdout.split('\n');
  const start = lines.findIndex((line) => line.includes("The 'numbers' are in 1000s of bytes per second"));
  const row = lines.slice(start + 1).find((line) => /^aes-256-gcm\s/i.test(line.trim()));
  const figure = row?.trim().split(/\s+/).pop()?.match(/^([\d.]+)k$/);
  if (start < 0 || !figure) {
    throw new Error(`unexpected output from openssl speed:\n${stdout}`);
  }
  return (Number(figure[1]) * 1000) / 1e9;
}
