import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as zlib from 'zlib';

/**
 * Writes enclave image files for tests, following the layout of
 * aws-nitro-enclaves-image-format (src/defs/mod.rs), and computes their PCRs
 * independently of the library's reader: straight from the section contents.
 */

export const EIF_HEADER_BYTES = 548;
const SECTION_TYPES = { kernel: 1, cmdline: 2, ramdisk: 3, signature: 4, metadata: 5 } as const;
export type SectionKind = keyof typeof SECTION_TYPES;

export interface EifSection {
  readonly kind: SectionKind;
  readonly data: Buffer;
}

/** The PEM certificate of the test signer (a self-signed P-384 certificate, private key discarded). */
export const TEST_SIGNING_CERT_PEM = fs.readFileSync(path.join(__dirname, '..', 'fixtures', 'eif-signing-cert.pem'));

/** A typical image: kernel, command line, the bootstrap ramdisk, two application ramdisks, a signature and metadata. */
export function typicalSections(): EifSection[] {
  return [
    { kind: 'kernel', data: Buffer.from('bzImage: not a real kernel, test bytes only') },
    { kind: 'cmdline', data: Buffer.from('reboot=k panic=30 pci=off nomodules console=ttyS0 random.trust_cpu=on root=/dev/ram0') },
    { kind: 'ramdisk', data: crypto.randomBytes(4096) },
    { kind: 'ramdisk', data: crypto.randomBytes(10_000) },
    { kind: 'ramdisk', data: crypto.randomBytes(777) },
    { kind: 'signature', data: signatureSection(TEST_SIGNING_CERT_PEM) },
    { kind: 'metadata', data: Buffer.from(JSON.stringify({ ImageName: 'test', ImageVersion: '1.0' })) },
  ];
}

/**
 * The bytes of an EIF: the v4 header with its section tables and CRC32, then each section.
 * The header is written field by field in the order and widths of EifHeader::to_be_bytes
 * (aws-nitro-enclaves-image-format, src/defs/mod.rs), not from the library's offsets.
 */
export function eifBytes(sections: readonly EifSection[], options: { version?: number; crc32?: number } = {}): Buffer {
  const offsets: bigint[] = [];
  let offset = EIF_HEADER_BYTES;
  const body: Buffer[] = [];
  for (const section of sections) {
    offsets.push(BigInt(offset));
    const sectionHeader = Buffer.alloc(12);
    sectionHeader.writeUInt16BE(SECTION_TYPES[section.kind], 0);
    sectionHeader.writeBigUInt64BE(BigInt(section.data.length), 4);
    body.push(sectionHeader, section.data);
    offset += 12 + section.data.length;
  }
  const table = (values: bigint[]) => Array.from({ length: 32 }, (_, i) => u64(values[i] ?? 0n));
  const fields = [
    Buffer.from('.eif', 'ascii'), // magic
    u16(options.version ?? 4), // version
    u16(0), // flags (x86_64)
    u64(4096n), // default_mem, MiB
    u64(2n), // default_cpus
    u16(0), // reserved
    u16(sections.length), // num_sections
    ...table(offsets), // section_offsets
    ...table(sections.map((section) => BigInt(section.data.length))), // section_sizes
    u32(0), // unused
  ];
  let crc = 0;
  for (const part of [...fields, ...body]) crc = zlib.crc32(part, crc);
  const header = Buffer.concat([...fields, u32(options.crc32 ?? crc >>> 0)]); // eif_crc32
  if (header.length !== EIF_HEADER_BYTES) throw new Error(`test EIF header is ${header.length} bytes`);
  return Buffer.concat([header, ...body]);
}

/** Where mod.rs's field order puts the section count, the offset table and the size table (for tests that patch them). */
export const EIF_SECTION_COUNT_AT = 26;
export const EIF_SECTION_OFFSETS_AT = 28;
export const EIF_SECTION_SIZES_AT = 28 + 32 * 8;

function u16(value: number): Buffer {
  const bytes = Buffer.alloc(2);
  bytes.writeUInt16BE(value);
  return bytes;
}

function u32(value: number): Buffer {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(value);
  return bytes;
}

function u64(value: bigint): Buffer {
  const bytes = Buffer.alloc(8);
  bytes.writeBigUInt64BE(value);
  return bytes;
}

/** Writes bytes to a new file in a fresh temporary directory and returns its path. */
export function writeTempFile(bytes: Buffer, name = 'enclave.eif'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'enclave-gpu-eif-'));
  const file = path.join(dir, name);
  fs.writeFileSync(file, bytes);
  return file;
}

export function writeEif(sections: readonly EifSection[] = typicalSections()): string {
  return writeTempFile(eifBytes(sections));
}

/**
 * A structurally valid EIF that boots nothing: a few bytes of kernel, a command line and a
 * ramdisk of `ramdiskBytes` zeros. Enough for the constructs, which measure the file.
 */
export function writePlaceholderEif(ramdiskBytes = 16): string {
  return writeEif(placeholderSections(ramdiskBytes));
}

export function placeholderSections(ramdiskBytes = 16): EifSection[] {
  return [
    { kind: 'kernel', data: Buffer.from('placeholder kernel: not bootable') },
    { kind: 'cmdline', data: Buffer.from('console=ttyS0') },
    { kind: 'ramdisk', data: Buffer.alloc(ramdiskBytes) },
  ];
}

/** PCRs as nitro-cli describe-eif computes them, written out from the rules in the user guide and eif_reader.rs. */
export function expectedPcrs(sections: readonly EifSection[]): Record<string, string> {
  const data = (kinds: SectionKind[]) => Buffer.concat(sections.filter((s) => kinds.includes(s.kind)).map((s) => s.data));
  const ramdisks = sections.filter((s) => s.kind === 'ramdisk').map((s) => s.data);
  const pcr = (bytes: Buffer) => sha384(Buffer.concat([Buffer.alloc(48), sha384(bytes)])).toString('hex');
  const ordered = sections.filter((s) => s.kind !== 'signature' && s.kind !== 'metadata');
  const result: Record<string, string> = {
    pcr0: pcr(Buffer.concat(ordered.map((s) => s.data))),
    pcr1: pcr(Buffer.concat([data(['kernel', 'cmdline']), ramdisks[0] ?? Buffer.alloc(0)])),
    pcr2: pcr(Buffer.concat(ramdisks.slice(1))),
  };
  if (sections.some((s) => s.kind === 'signature')) {
    result.pcr8 = pcr(new crypto.X509Certificate(TEST_SIGNING_CERT_PEM).raw);
  }
  return result;
}

function sha384(bytes: Buffer): Buffer {
  return crypto.createHash('sha384').update(bytes).digest();
}

/**
 * A signature section as serde_cbor writes `Vec<PcrSignature>`: an array of maps whose
 * `Vec<u8>` fields are arrays of integers. `asByteStrings` writes them as CBOR byte strings.
 */
export function signatureSection(certificatePem: Buffer, options: { asByteStrings?: boolean } = {}): Buffer {
  const bytes = (b: Buffer) => (options.asByteStrings ? cborBytes(b) : cborArray([...b].map(cborUint)));
  const entry = cborMap([
    [cborText('signing_certificate'), bytes(certificatePem)],
    [cborText('signature'), bytes(crypto.randomBytes(100))],
  ]);
  return cborArray([entry]);
}

function cborHead(major: number, length: number): Buffer {
  if (length < 24) return Buffer.from([(major << 5) | length]);
  if (length < 0x100) return Buffer.from([(major << 5) | 24, length]);
  if (length < 0x10000) {
    const b = Buffer.alloc(3);
    b[0] = (major << 5) | 25;
    b.writeUInt16BE(length, 1);
    return b;
  }
  const b = Buffer.alloc(5);
  b[0] = (major << 5) | 26;
  b.writeUInt32BE(length, 1);
  return b;
}
const cborUint = (n: number) => cborHead(0, n);
const cborBytes = (b: Buffer) => Buffer.concat([cborHead(2, b.length), b]);
const cborText = (s: string) => Buffer.concat([cborHead(3, Buffer.byteLength(s)), Buffer.from(s)]);
const cborArray = (items: Buffer[]) => Buffer.concat([cborHead(4, items.length), ...items]);
const cborMap = (entries: Array<[Buffer, Buffer]>) => Buffer.concat([cborHead(5, entries.length), ...entries.flat()]);
