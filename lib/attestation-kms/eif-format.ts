/**
 * The enclave image file (EIF) layout, as defined by aws-nitro-enclaves-image-format
 * (src/defs/mod.rs): a fixed 548-byte big-endian header, then sections, each a 12-byte
 * big-endian header (type u16, flags u16, size u64) followed by its data.
 */

export const EIF_MAGIC = Buffer.from('.eif', 'ascii');

/** Versions the format has had: v2 added the CRC, v3 the signature section, v4 the metadata section. */
export const EIF_KNOWN_VERSIONS = [1, 2, 3, 4];

export const EIF_MAX_SECTIONS = 32;

/** magic, version, flags, default memory, default CPUs, reserved, section count, offsets, sizes, unused, CRC32. */
export const EIF_HEADER_SIZE = 4 + 2 + 2 + 8 + 8 + 2 + 2 + EIF_MAX_SECTIONS * 8 * 2 + 4 + 4;

/** Where the header's fields start, in the order EifHeader::to_be_bytes writes them. */
const VERSION_AT = 4;
const SECTION_COUNT_AT = 4 + 2 + 2 + 8 + 8 + 2;
const SECTION_OFFSETS_AT = SECTION_COUNT_AT + 2;
const SECTION_SIZES_AT = SECTION_OFFSETS_AT + EIF_MAX_SECTIONS * 8;

export const EIF_SECTION_HEADER_SIZE = 12;

export enum EifSectionType {
  KERNEL = 1,
  CMDLINE = 2,
  RAMDISK = 3,
  SIGNATURE = 4,
  METADATA = 5,
}

export interface EifHeader {
  readonly version: number;
  readonly sectionCount: number;
  readonly sectionOffsets: readonly number[];
  readonly sectionSizes: readonly number[];
  readonly crc32: number;
}

export class EifFormatError extends Error {}

export function parseEifHeader(bytes: Buffer): EifHeader {
  if (bytes.length < EIF_MAGIC.length || !bytes.subarray(0, EIF_MAGIC.length).equals(EIF_MAGIC)) {
    throw new EifFormatError("it is not an enclave image file (it does not start with '.eif')");
  }
  if (bytes.length < EIF_HEADER_SIZE) {
    throw new EifFormatError(`it is truncated: the EIF header takes ${EIF_HEADER_SIZE} bytes, the file has ${bytes.length}`);
  }
  const version = bytes.readUInt16BE(VERSION_AT);
  if (!EIF_KNOWN_VERSIONS.includes(version)) {
    throw new EifFormatError(`its EIF version ${version} is unknown (this library reads versions ${EIF_KNOWN_VERSIONS.join(', ')})`);
  }
  const sectionCount = bytes.readUInt16BE(SECTION_COUNT_AT);
  if (sectionCount > EIF_MAX_SECTIONS) {
    throw new EifFormatError(`its header lists ${sectionCount} sections, more than the format's ${EIF_MAX_SECTIONS}`);
  }
  const table = (start: number) => Array.from({ length: EIF_MAX_SECTIONS }, (_, i) => readU64(bytes, start + i * 8, 'the section table'));
  return {
    version,
    sectionCount,
    sectionOffsets: table(SECTION_OFFSETS_AT),
    sectionSizes: table(SECTION_SIZES_AT),
    crc32: bytes.readUInt32BE(EIF_HEADER_SIZE - 4),
  };
}

export interface EifSectionHeader {
  readonly type: EifSectionType;
  readonly size: number;
}

export function parseEifSectionHeader(bytes: Buffer, offset: number): EifSectionHeader {
  const type = bytes.readUInt16BE(0);
  if (!(type in EifSectionType) || typeof EifSectionType[type] !== 'string') {
    throw new EifFormatError(`the section at offset ${offset} has ${type === 0 ? 'the invalid type 0' : `an unknown type ${type}`}`);
  }
  return { type, size: readU64(bytes, 4, `the section header at offset ${offset}`) };
}

export function sectionName(type: EifSectionType): string {
  return EifSectionType[type].toLowerCase();
}

function readU64(bytes: Buffer, at: number, what: string): number {
  const value = bytes.readBigUInt64BE(at);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new EifFormatError(`${what} holds a size or offset of ${value} bytes, beyond any real file`);
  }
  return Number(value);
}
