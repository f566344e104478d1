import { execFileSync } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import * as zlib from 'zlib';
import { describe, expect, it } from 'vitest';
import { EifMeasurements } from '../lib/attestation-kms';
import { measureEif } from '../lib/attestation-kms/eif-measurements';
import { decodeCbor } from '../lib/shared/cbor';
import { parseEifHeader } from '../lib/attestation-kms/eif-format';
import {
  EIF_SECTION_COUNT_AT,
  EIF_SECTION_OFFSETS_AT,
  EIF_SECTION_SIZES_AT,
  EifSection,
  TEST_SIGNING_CERT_PEM,
  eifBytes,
  expectedPcrs,
  placeholderSections,
  signatureSection,
  typicalSections,
  writeEif,
  writeTempFile,
} from './helpers/eif';

const ROOT = path.resolve(__dirname, '..');

describe('EIF header layout', () => {
  it('reads the fields where EifHeader::to_be_bytes writes them (the values of mod.rs\'s own round-trip test)', () => {
    // magic 4 | version u16 | flags u16 | default_mem u64 | default_cpus u64 | reserved u16 | num_sections u16 |
    // section_offsets [u64; 32] | section_sizes [u64; 32] | unused u32 | eif_crc32 u32: 548 bytes, big-endian.
    const hex = [
      '2e656966', '0003', '0004', '0000000000000005', '0000000000000006', '0002', '0005',
      '000000000000000c'.repeat(32), '000000000000000d'.repeat(32), '00000000', '0000007b',
    ].join('');
    const header = parseEifHeader(Buffer.from(hex, 'hex'));
    expect(header).toEqual({ version: 3, sectionCount: 5, sectionOffsets: Array(32).fill(12), sectionSizes: Array(32).fill(13), crc32: 123 });
    expect([EIF_SECTION_COUNT_AT, EIF_SECTION_OFFSETS_AT, EIF_SECTION_SIZES_AT]).toEqual([26, 28, 284]);
  });
});
const measure = (sections: EifSection[]) => EifMeasurements.fromFile(writeEif(sections));
const measureBytes = (bytes: Buffer) => () => EifMeasurements.fromFile(writeTempFile(bytes));
const EMPTY_PCR = '21b9efbc184807662e966d34f390821309eeac6802309798826296bf3e8bec7c10edb30948c90ba67310f7b964fc500a';

describe('EifMeasurements.fromFile', () => {
  it('computes PCR0, PCR1, PCR2 and PCR8 of a signed image with metadata', () => {
    const sections = typicalSections();
    const pcrs = measure(sections);
    expect(pcrs).toEqual(expectedPcrs(sections));
    expect(Object.keys(pcrs)).toEqual(['pcr0', 'pcr1', 'pcr2', 'pcr8']);
  });

  it('reads the certificate whether serde wrote it as an integer array or a byte string', () => {
    const asIntegers = typicalSections();
    const asBytes = asIntegers.map((s) => (s.kind === 'signature' ? { kind: s.kind, data: signatureSection(TEST_SIGNING_CERT_PEM, { asByteStrings: true }) } : s));
    expect(measure(asBytes).pcr8).toBe(measure(asIntegers).pcr8);
  });

  it('gives no PCR8 for an unsigned image', () => {
    const sections = typicalSections().filter((s) => s.kind !== 'signature');
    expect(measure(sections)).toEqual(expectedPcrs(sections));
    expect(measure(sections).pcr8).toBeUndefined();
  });

  it('measures an image with one ramdisk: PCR1 equals PCR0, PCR2 is the measurement of nothing', () => {
    const pcrs = measure(placeholderSections());
    expect(pcrs.pcr1).toBe(pcrs.pcr0);
    expect(pcrs.pcr2).toBe(EMPTY_PCR);
  });

  it('does not measure metadata', () => {
    const base = typicalSections();
    const other = base.map((s) => (s.kind === 'metadata' ? { kind: s.kind, data: Buffer.from('{"ImageName":"other"}') } : s));
    expect(measure(other)).toEqual(measure(base));
  });

  it('changes PCR0 and PCR2, not PCR1, when an application ramdisk changes', () => {
    const base = typicalSections();
    const changed = base.map((s, i) => (i === 3 ? { kind: s.kind, data: Buffer.concat([s.data, Buffer.from([1])]) } : s));
    const [a, b] = [measure(base), measure(changed)];
    expect(b.pcr0).not.toBe(a.pcr0);
    expect(b.pcr2).not.toBe(a.pcr2);
    expect(b.pcr1).toBe(a.pcr1);
  });

  it('accepts EIF versions 1 to 4 (v1 has no CRC)', () => {
    for (const version of [1, 2, 3, 4]) {
      expect(measureBytes(eifBytes(placeholderSections(), { version }))()).toEqual(expectedPcrs(placeholderSections()));
    }
    expect(measureBytes(eifBytes(placeholderSections(), { version: 1, crc32: 0 }))).not.toThrow();
  });

  describe('refuses malformed files with the reason', () => {
    const good = eifBytes(typicalSections());
    const patched = (at: number, bytes: number[]) => {
      const copy = Buffer.from(good);
      Buffer.from(bytes).copy(copy, at);
      return copy;
    };
    const firstSection = 548;

    it.each([
      ['a text file', Buffer.from('#!/bin/sh\necho hello\n'), /it is not an enclave image file \(it does not start with '.eif'\)/],
      ['an empty file', Buffer.alloc(0), /it is not an enclave image file/],
      ['a truncated header', good.subarray(0, 100), /it is truncated: the EIF header takes 548 bytes, the file has 100/],
      ['an unknown version', patched(4, [0, 5]), /its EIF version 5 is unknown \(this library reads versions 1, 2, 3, 4\)/],
      ['version 0', patched(4, [0, 0]), /its EIF version 0 is unknown/],
      ['a cut-off last section', good.subarray(0, good.length - 10), /it is truncated: the metadata section at offset \d+ declares \d+ bytes, \d+ remain/],
      ['a cut-off section header', good.subarray(0, firstSection + 5), /5 bytes at offset 548 are too few for a section header/],
      ['section type 0', patched(firstSection, [0, 0]), /the section at offset 548 has the invalid type 0/],
      ['an unknown section type', patched(firstSection, [0, 9]), /the section at offset 548 has an unknown type 9/],
      ['a section size beyond any file', patched(firstSection + 4, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), /beyond any real file/],
      ['a section count that disagrees', patched(EIF_SECTION_COUNT_AT, [0, 3]), /its header's section table does not match section 3/],
      ['a section table that disagrees', patched(EIF_SECTION_OFFSETS_AT + 8, [0, 0, 0, 0, 0, 0, 0, 1]), /its header's section table does not match section 1/],
      ['a wrong CRC32', patched(544, [0xde, 0xad, 0xbe, 0xef]), /its CRC32 is 0x[0-9a-f]{8} but its header records 0xdeadbeef: the file is corrupt/],
      ['a flipped byte in a ramdisk', patched(good.length - 2000, [good[good.length - 2000] ^ 1]), /the file is corrupt/],
    ])('%s', (_name, bytes, message) => {
      expect(measureBytes(bytes)).toThrow(message);
    });

    it('a header that lists more sections than the file holds', () => {
      const sections = placeholderSections();
      const bytes = eifBytes(sections);
      bytes.writeUInt16BE(4, EIF_SECTION_COUNT_AT);
      expect(measureBytes(bytes)).toThrow(/its header lists 4 sections, the file holds 3/);
    });

    it('an image without a kernel, or with two', () => {
      const sections = placeholderSections();
      expect(measureBytes(eifBytes(sections.slice(1)))).toThrow(/it holds 0 kernel and 1 ramdisk sections/);
      expect(measureBytes(eifBytes([sections[0], ...sections]))).toThrow(/it holds 2 kernel and 1 ramdisk sections/);
    });

    it.each([
      ['is not CBOR', Buffer.from([0x9f, 0x00]), /its signature section is not valid CBOR/],
      ['has no certificate', Buffer.from([0x81, 0xa0]), /its signature section holds no signing_certificate/],
      ['holds a certificate that is not X.509', signatureSection(Buffer.from('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n')), /is not a valid X.509 certificate/],
      ['is oversized', Buffer.alloc(1024 * 1024 + 1), /its signature section is 1048577 bytes/],
    ])('a signature section that %s', (_name, data, message) => {
      const sections: EifSection[] = [...placeholderSections(), { kind: 'signature', data }];
      expect(measureBytes(eifBytes(sections))).toThrow(message);
    });

    it('names the file', () => {
      expect(measureBytes(Buffer.from('nope'))).toThrow(/^EifMeasurements.fromFile: \/.*enclave\.eif: it is not an enclave image file/);
    });
  });

  it('measures a 1 GiB image in bounded memory', () => {
    // A sparse file: a real 1 GiB application ramdisk of zeros, streamed through the reader in a child process.
    const ramdiskBytes = 1024 ** 3;
    const head = placeholderSections();
    const file = writeTempFile(Buffer.alloc(0), 'large.eif');
    const sections: EifSection[] = [...head, { kind: 'ramdisk', data: Buffer.alloc(0) }];
    const header = eifBytes(sections);
    // Patch the last section's size to 1 GiB in the header table and its section header, then extend the file.
    const lastHeaderAt = header.length - 12;
    header.writeBigUInt64BE(BigInt(ramdiskBytes), EIF_SECTION_SIZES_AT + 3 * 8);
    header.writeBigUInt64BE(BigInt(ramdiskBytes), lastHeaderAt + 4);
    const zeros = Buffer.alloc(64 * 1024 * 1024);
    let crc = zlib.crc32(header.subarray(0, 544));
    crc = zlib.crc32(header.subarray(548), crc);
    for (let done = 0; done < ramdiskBytes; done += zeros.length) crc = zlib.crc32(zeros, crc);
    header.writeUInt32BE(crc >>> 0, 544);
    fs.writeFileSync(file, header);
    fs.truncateSync(file, header.length + ramdiskBytes);

    const script = `const { EifMeasurements } = require(${JSON.stringify(path.join(ROOT, 'lib', 'attestation-kms'))});
      const pcrs = EifMeasurements.fromFile(${JSON.stringify(file)});
      process.stdout.write(JSON.stringify({ pcrs, maxRssKiB: process.resourceUsage().maxRSS }));`;
    const out = JSON.parse(execFileSync(path.join(ROOT, 'node_modules', '.bin', 'tsx'), ['-e', script], { cwd: ROOT, encoding: 'utf8' }));
    fs.rmSync(file);

    const app = crypto.createHash('sha384');
    for (let done = 0; done < ramdiskBytes; done += zeros.length) app.update(zeros);
    const expectedPcr2 = crypto.createHash('sha384').update(Buffer.alloc(48)).update(app.digest()).digest('hex');
    expect(out.pcrs.pcr2).toBe(expectedPcr2);
    expect(out.pcrs.pcr1).toBe(expectedPcrs(head).pcr1);
    // The whole file would need more than 1 GiB; streaming stays far below that.
    expect(out.maxRssKiB).toBeLessThan(200 * 1024);
  }, 180_000);
});

describe('EifMeasurements.pcr4ForInstance and pcr3ForRole', () => {
  it('matches PCR4 of a real attestation document from AWS Nitro hardware', () => {
    // ../shared/test-vectors: a document from instance i-0bbf1bfe232b8c2ce; read its PCR4 from the COSE payload.
    const doc = Buffer.from(fs.readFileSync(path.join(ROOT, '..', 'shared', 'test-vectors', 'nitro-debug-2024-09-17.b64'), 'utf8').trim(), 'base64');
    const cose = decodeCbor(doc) as Buffer[];
    const payload = decodeCbor(cose[2]) as Map<unknown, unknown>;
    const pcr4 = ((payload.get('pcrs') as Map<number, Buffer>).get(4) as Buffer).toString('hex');
    expect(pcr4).toMatch(/^d352cfa3/);
    expect(EifMeasurements.pcr4ForInstance('i-0bbf1bfe232b8c2ce')).toBe(pcr4);
  });

  it('computes PCR3 as the user guide does: SHA-384 over 48 zero bytes and the role ARN', () => {
    const arn = 'arn:aws:iam::123456789012:role/my-role';
    const expected = crypto.createHash('sha384').update(Buffer.concat([Buffer.alloc(48), Buffer.from(arn)])).digest('hex');
    expect(EifMeasurements.pcr3ForRole(arn)).toBe(expected);
    expect(EifMeasurements.pcr3ForRole('arn:aws-us-gov:iam::123456789012:role/path/to/role')).toMatch(/^[0-9a-f]{96}$/);
  });

  it.each(['i-123', 'I-0bbf1bfe232b8c2ce', 'i-0bbf1bfe232b8c2ce ', 'arn:aws:ec2:us-east-1:123456789012:instance/i-0bbf1bfe232b8c2ce'])(
    'refuses the instance id %j', (id) => {
      expect(() => EifMeasurements.pcr4ForInstance(id)).toThrow(/is not an EC2 instance id/);
    });

  it.each(['my-role', 'arn:aws:iam::123456789012:user/alice', 'arn:aws:iam::12345:role/x'])('refuses the role ARN %j', (arn) => {
    expect(() => EifMeasurements.pcr3ForRole(arn)).toThrow(/is not an IAM role ARN/);
  });
});

describe('measureEif', () => {
  it('returns the SHA-256 of the whole file from the same pass as the PCRs', () => {
    const sections = typicalSections();
    const bytes = eifBytes(sections);
    const measurement = measureEif(writeTempFile(bytes));
    expect(measurement.sha256).toBe(crypto.createHash('sha256').update(bytes).digest('hex'));
    expect(measurement.pcrs).toEqual(expectedPcrs(sections));
  });
});
