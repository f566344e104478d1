import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

/** Size of an EIF v4 header: magic, version, flags, default memory and CPUs, reserved, section count, 32 offsets, 32 sizes, unused, CRC32. */
export const EIF_HEADER_BYTES = 4 + 2 + 2 + 8 + 8 + 2 + 2 + 32 * 8 + 32 * 8 + 4 + 4;

/**
 * Writes an EIF v4 header with no sections, followed by `paddingBytes` zero bytes, to a
 * fresh temporary directory, and returns its path. Enough for the constructs, which check
 * the magic bytes and size; not a bootable enclave.
 */
export function writePlaceholderEif(paddingBytes = 0): string {
  const header = Buffer.alloc(EIF_HEADER_BYTES);
  header.write('.eif', 0, 'ascii');
  header.writeUInt16BE(4, 4);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'enclave-gpu-eif-'));
  const file = path.join(dir, 'placeholder.eif');
  fs.writeFileSync(file, Buffer.concat([header, Buffer.alloc(paddingBytes)]));
  return file;
}
