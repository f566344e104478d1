import * as crypto from 'crypto';
import * as fs from 'fs';
import * as zlib from 'zlib';
import { decodeCbor, CborError, CborValue } from '../shared/cbor';
import {
  EIF_HEADER_SIZE,
  EIF_SECTION_HEADER_SIZE,
  EifFormatError,
  EifSectionType,
  parseEifHeader,
  parseEifSectionHeader,
  sectionName,
} from './eif-format';
import { Pcrs } from './pcrs';

const CHUNK_BYTES = 1024 * 1024;
/** Signature sections hold one certificate and one COSE signature: kilobytes, never megabytes. */
const MAX_SIGNATURE_SECTION_BYTES = 1024 * 1024;
const SHA384_BYTES = 48;

/**
 * Measurements of a Nitro enclave, computed at synth time without nitro-cli.
 *
 * Each PCR is a SHA-384 "extend" of an all-zero register: `SHA384(48 zero bytes ‖ SHA384(data))`.
 */
export class EifMeasurements {
  /**
   * PCR0, PCR1 and PCR2 of an enclave image file, and PCR8 when it is signed, exactly as
   * `nitro-cli describe-eif` reports them.
   *
   * The rules follow aws-nitro-enclaves-image-format (src/utils/eif_reader.rs,
   * `EifReader::from_eif`, and src/defs/eif_hasher.rs, `tpm_extend_finalize_reset`):
   * sections are read in file order; PCR0 measures every kernel, command-line and ramdisk
   * section; PCR1 the kernel, the command line and the first ramdisk; PCR2 the remaining
   * ramdisks; PCR8 the DER of the signing certificate in the signature section; metadata
   * sections are not measured. The file is streamed in 1 MiB chunks, and its CRC32 checked
   * like `EifReader::check_crc`.
   *
   * @param filePath path to the `.eif` file
   */
  public static fromFile(filePath: string): Pcrs {
    return measureEif(filePath).pcrs;
  }

  /**
   * PCR3 of enclaves whose parent instance runs with the given IAM role: the measurement
   * of the role ARN's UTF-8 bytes, as in the AWS Nitro Enclaves User Guide
   * ("Where to get an enclave's measurements").
   *
   * @param roleArn the ARN of the parent instance's role, for example `arn:aws:iam::123456789012:role/my-role`
   */
  public static pcr3ForRole(roleArn: string): string {
    if (!/^arn:aws[a-z-]*:iam::\d{12}:role\/.+$/.test(roleArn)) {
      throw new Error(`EifMeasurements.pcr3ForRole: '${roleArn}' is not an IAM role ARN (arn:<partition>:iam::<account>:role/<name>)`);
    }
    return extend(Buffer.from(roleArn, 'utf8'));
  }

  /**
   * PCR4 of enclaves on the given parent instance: the measurement of the instance id's
   * UTF-8 bytes, as in the AWS Nitro Enclaves User Guide.
   *
   * @param instanceId the parent instance id, for example `i-1234567890abcdef0`
   */
  public static pcr4ForInstance(instanceId: string): string {
    if (!/^i-[0-9a-f]{8}([0-9a-f]{9})?$/.test(instanceId)) {
      throw new Error(`EifMeasurements.pcr4ForInstance: '${instanceId}' is not an EC2 instance id (i- and 8 or 17 hex digits)`);
    }
    return extend(Buffer.from(instanceId, 'utf8'));
  }

  private constructor() {}
}

/** SHA384(48 zero bytes ‖ data): one extend of an all-zero register, with data already a digest or raw bytes. */
function extend(data: Buffer): string {
  return crypto.createHash('sha384').update(Buffer.alloc(SHA384_BYTES)).update(data).digest('hex');
}

/** The PCR of measured data, from the finished hash of that data. */
function pcrOf(hash: crypto.Hash): string {
  return extend(hash.digest());
}

/** What one pass over an EIF yields: its PCRs, and the SHA-256 of the whole file. */
export interface EifMeasurement {
  readonly pcrs: Pcrs;
  /** SHA-256 of every byte of the file, lower-case hex: what the parent checks after download. */
  readonly sha256: string;
}

/**
 * Measures an EIF in one streamed pass: its PCRs and the SHA-256 of the file. Every byte is
 * read exactly once, in order (header, then each section header and its data).
 */
export function measureEif(filePath: string): EifMeasurement {
  try {
    return measureEifFile(filePath);
  } catch (error) {
    if (error instanceof EifFormatError) {
      throw new Error(`EifMeasurements.fromFile: ${filePath}: ${error.message}`);
    }
    throw error;
  }
}

function measureEifFile(filePath: string): EifMeasurement {
  const fd = openForReading(filePath);
  try {
    const fileSize = fs.fstatSync(fd).size;
    const headerBytes = readExactly(fd, Math.min(EIF_HEADER_SIZE, fileSize), 0);
    const header = parseEifHeader(headerBytes);

    const whole = crypto.createHash('sha256').update(headerBytes);
    const image = crypto.createHash('sha384');
    const bootstrap = crypto.createHash('sha384');
    const app = crypto.createHash('sha384');
    let certificateDer: Buffer | undefined;
    let crc = zlib.crc32(headerBytes.subarray(0, EIF_HEADER_SIZE - 4));
    let ramdisks = 0;
    let kernels = 0;
    let sections = 0;

    let offset = EIF_HEADER_SIZE;
    while (offset < fileSize) {
      if (fileSize - offset < EIF_SECTION_HEADER_SIZE) {
        throw new EifFormatError(`it is truncated: ${fileSize - offset} bytes at offset ${offset} are too few for a section header`);
      }
      const sectionHeaderBytes = readExactly(fd, EIF_SECTION_HEADER_SIZE, offset);
      const section = parseEifSectionHeader(sectionHeaderBytes, offset);
      const dataOffset = offset + EIF_SECTION_HEADER_SIZE;
      if (section.size > fileSize - dataOffset) {
        throw new EifFormatError(
          `it is truncated: the ${sectionName(section.type)} section at offset ${offset} declares ${section.size} bytes, ${fileSize - dataOffset} remain`,
        );
      }
      if (sections >= header.sectionCount || header.sectionOffsets[sections] !== offset || header.sectionSizes[sections] !== section.size) {
        throw new EifFormatError(
          `its header's section table does not match section ${sections} (${sectionName(section.type)}, offset ${offset}, ${section.size} bytes)`,
        );
      }
      crc = zlib.crc32(sectionHeaderBytes, crc);
      whole.update(sectionHeaderBytes);

      const measuredBy = hashersFor(section.type, ramdisks, { image, bootstrap, app });
      if (section.type === EifSectionType.SIGNATURE) {
        const data = readSignatureSection(fd, dataOffset, section.size);
        crc = zlib.crc32(data, crc);
        whole.update(data);
        certificateDer = signingCertificateDer(data);
      } else {
        crc = streamSection(fd, dataOffset, section.size, [...measuredBy, whole], crc);
      }
      kernels += section.type === EifSectionType.KERNEL ? 1 : 0;
      ramdisks += section.type === EifSectionType.RAMDISK ? 1 : 0;
      sections += 1;
      offset = dataOffset + section.size;
    }

    if (sections !== header.sectionCount) {
      throw new EifFormatError(`it is truncated: its header lists ${header.sectionCount} sections, the file holds ${sections}`);
    }
    if (kernels !== 1 || ramdisks === 0) {
      throw new EifFormatError(`it holds ${kernels} kernel and ${ramdisks} ramdisk sections; an enclave image has one kernel and at least one ramdisk`);
    }
    if (header.version >= 2 && crc >>> 0 !== header.crc32) {
      throw new EifFormatError(`its CRC32 is ${hex32(crc)} but its header records ${hex32(header.crc32)}: the file is corrupt`);
    }
    const pcrs: Pcrs = {
      pcr0: pcrOf(image),
      pcr1: pcrOf(bootstrap),
      pcr2: pcrOf(app),
      ...(certificateDer ? { pcr8: extend(crypto.createHash('sha384').update(certificateDer).digest()) } : {}),
    };
    return { pcrs, sha256: whole.digest('hex') };
  } finally {
    fs.closeSync(fd);
  }
}

/** Which PCR hashes a section feeds (eif_reader.rs): kernel and cmdline feed PCR0 and PCR1; ramdisks PCR0 and PCR1 (the first) or PCR2. */
function hashersFor(
  type: EifSectionType,
  ramdisksSoFar: number,
  hashes: { image: crypto.Hash; bootstrap: crypto.Hash; app: crypto.Hash },
): crypto.Hash[] {
  switch (type) {
    case EifSectionType.KERNEL:
    case EifSectionType.CMDLINE:
      return [hashes.image, hashes.bootstrap];
    case EifSectionType.RAMDISK:
      return [hashes.image, ramdisksSoFar === 0 ? hashes.bootstrap : hashes.app];
    default:
      return [];
  }
}

function streamSection(fd: number, offset: number, size: number, hashes: crypto.Hash[], crc: number): number {
  const chunk = Buffer.alloc(Math.min(CHUNK_BYTES, Math.max(size, 1)));
  let done = 0;
  while (done < size) {
    const length = fs.readSync(fd, chunk, 0, Math.min(chunk.length, size - done), offset + done);
    if (length === 0) {
      throw new EifFormatError(`it is truncated: the file ended at offset ${offset + done}`);
    }
    const bytes = chunk.subarray(0, length);
    hashes.forEach((hash) => hash.update(bytes));
    crc = zlib.crc32(bytes, crc);
    done += length;
  }
  return crc;
}

function readSignatureSection(fd: number, offset: number, size: number): Buffer {
  if (size > MAX_SIGNATURE_SECTION_BYTES) {
    throw new EifFormatError(`its signature section is ${size} bytes, more than the ${MAX_SIGNATURE_SECTION_BYTES} a certificate and a signature need`);
  }
  return readExactly(fd, size, offset);
}

/**
 * The DER of the first signing certificate in a signature section: a CBOR array of
 * `PcrSignature { signing_certificate, signature }`, the certificate in PEM
 * (src/defs/mod.rs). serde_cbor writes `Vec<u8>` as an array of integers; byte strings
 * are accepted too.
 */
function signingCertificateDer(section: Buffer): Buffer {
  let decoded: CborValue;
  try {
    decoded = decodeCbor(section);
  } catch (error) {
    if (error instanceof CborError) {
      throw new EifFormatError(`its signature section is not valid CBOR: ${error.message}`);
    }
    throw error;
  }
  const first = Array.isArray(decoded) ? decoded[0] : undefined;
  const pem = first instanceof Map ? asBytes(first.get('signing_certificate')) : undefined;
  if (!pem) {
    throw new EifFormatError('its signature section holds no signing_certificate');
  }
  try {
    return new crypto.X509Certificate(pem).raw;
  } catch {
    throw new EifFormatError('the signing certificate in its signature section is not a valid X.509 certificate');
  }
}

function asBytes(value: CborValue): Buffer | undefined {
  if (Buffer.isBuffer(value)) {
    return value;
  }
  if (Array.isArray(value) && value.every((b) => typeof b === 'number' && Number.isInteger(b) && b >= 0 && b <= 255)) {
    return Buffer.from(value as number[]);
  }
  return undefined;
}

function openForReading(filePath: string): number {
  try {
    return fs.openSync(filePath, 'r');
  } catch {
    throw new EifFormatError('it cannot be opened (does it exist?)');
  }
}

function readExactly(fd: number, length: number, position: number): Buffer {
  const buffer = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const read = fs.readSync(fd, buffer, done, length - done, position + done);
    if (read === 0) {
      throw new EifFormatError(`it is truncated at offset ${position + done}`);
    }
    done += read;
  }
  return buffer;
}

function hex32(value: number): string {
  return `0x${(value >>> 0).toString(16).padStart(8, '0')}`;
}
