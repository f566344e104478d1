import { describe, expect, it } from 'vitest';
import { progressReporter, PROGRESS_MIN_BYTES } from '../../src/cli/progress';

function lines(total: number | undefined, done: number[], minBytes?: number): string[] {
  const written: string[] = [];
  const report = progressReporter({ stdout: () => undefined, stderr: (text) => written.push(text) }, 'egpu artefact seal', total, minBytes);
  for (const n of done) report?.(n);
  return written;
}

describe('progress on stderr', () => {
  it('writes one line per tenth of a large file', () => {
    const total = 3 * 1024 ** 3;
    const steps = Array.from({ length: 100 }, (_, i) => Math.round(((i + 1) * total) / 100));
    const written = lines(total, steps);
    expect(written).toHaveLength(10);
    expect(written[3]).toBe('egpu artefact seal: 40% (1.2 GiB of 3.0 GiB)\n');
    expect(written[9]).toBe('egpu artefact seal: 100% (3.0 GiB of 3.0 GiB)\n');
  });

  it('says nothing for small files, unknown sizes, or no change', () => {
    expect(lines(PROGRESS_MIN_BYTES - 1, [PROGRESS_MIN_BYTES - 1])).toEqual([]);
    expect(lines(undefined, [1, 2, 3])).toEqual([]);
    expect(lines(1000, [10, 20, 30], 1)).toEqual([]);
    expect(lines(1000, [150, 150, 160], 1)).toEqual(['egpu artefact seal: 10% (150 bytes of 1000 bytes)\n']);
  });
});
