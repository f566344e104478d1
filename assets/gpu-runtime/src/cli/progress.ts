import { CommandIo } from './command';

/** Files smaller than this are done before anyone would read a progress line. */
export const PROGRESS_MIN_BYTES = 64 * 1024 * 1024;

/**
 * A progress callback that writes one line to stderr at each tenth of `totalBytes`
 * ("egpu artefact seal: 40% (1.2 GiB of 3.0 GiB)"), or undefined for a small or unknown size.
 * Lines rather than a redrawn counter, so logs of unattended runs stay readable.
 */
export function progressReporter(
  io: CommandIo,
  label: string,
  totalBytes: number | undefined,
  minBytes = PROGRESS_MIN_BYTES,
): ((doneBytes: number) => void) | undefined {
  if (totalBytes === undefined || totalBytes < minBytes || totalBytes === 0) return undefined;
  let reportedTenths = 0;
  return (doneBytes) => {
    const tenths = Math.min(10, Math.floor((doneBytes * 10) / totalBytes));
    if (tenths > reportedTenths) {
      reportedTenths = tenths;
      io.stderr(`${label}: ${tenths * 10}% (${formatBytes(doneBytes)} of ${formatBytes(totalBytes)})\n`);
    }
  };
}

function formatBytes(bytes: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} bytes` : `${value.toFixed(1)} ${units[unit]}`;
}
