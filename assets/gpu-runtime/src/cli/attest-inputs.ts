/**
 * Parses what `egpu attest` reads from its command line and files, strictly and bounded:
 * a wrong value is a UsageError (exit 2) before any check runs, an unreadable file a
 * RuntimeError (exit 1).
 */
import { createPublicKey, X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { AttestationError } from '../attestation/attestation-error';
import { LIMITS } from '../attestation/document';
import { RuntimeError, UsageError } from '../errors';

/** Base64 makes 4 characters of 3 bytes; the rest is room for line breaks. */
const MAX_DOCUMENT_FILE_BYTES = 2 * LIMITS.documentBytes;
const MAX_PEM_FILE_BYTES = 16 * 1024;

/** ISO 8601 with an explicit zone: a bare local time would verify against the wrong instant. */
const ISO_8601 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2})$/;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** `--at`: `now`, or an ISO 8601 instant. */
export function parseInstant(value: string | undefined): Date {
  if (value === undefined || value === 'now') return new Date();
  const date = new Date(value);
  if (!ISO_8601.test(value) || Number.isNaN(date.getTime())) {
    throw new UsageError(`--at must be 'now' or an ISO 8601 time with a zone (2024-09-17T04:30:41Z), got '${value}'`);
  }
  return date;
}

/** Hex of at most `maxBytes` bytes (exactly, when `exact`). */
export function parseHex(value: string, option: string, maxBytes: number, exact = false): Buffer {
  if (!/^([0-9a-fA-F]{2})*$/.test(value) || value.length / 2 > maxBytes || (exact && value.length / 2 !== maxBytes)) {
    throw new UsageError(`${option} must be ${exact ? '' : 'at most '}${maxBytes} bytes of hex, got '${value.slice(0, 40)}${value.length > 40 ? '...' : ''}'`);
  }
  return Buffer.from(value, 'hex');
}

/** Repeated `N=HEX` PCR assignments, index 0..31, value 48 bytes; one value per index. */
export function parsePcrAssignments(values: readonly string[] | undefined, option: string): Record<number, Buffer> {
  const pcrs: Record<number, Buffer> = {};
  for (const assignment of values ?? []) {
    const match = /^(\d{1,2})=(.*)$/.exec(assignment);
    const index = match ? Number(match[1]) : NaN;
    if (!match || index >= LIMITS.maxPcrs) {
      throw new UsageError(`${option} must be N=HEX with N from 0 to ${LIMITS.maxPcrs - 1}, got '${assignment}'`);
    }
    const value = parseHex(match[2], `${option} ${index}`, LIMITS.pcrBytes, true);
    if (pcrs[index] && !pcrs[index].equals(value)) {
      throw new UsageError(`${option} gives PCR${index} twice with different values`);
    }
    pcrs[index] = value;
  }
  return pcrs;
}

/** An attestation document file: raw CBOR (COSE_Sign1, tagged or not) or its base64. */
export function readDocumentFile(path: string): Buffer {
  const bytes = readBounded(path, MAX_DOCUMENT_FILE_BYTES);
  // A COSE_Sign1 starts with 0x84 (array of 4) or 0xd2 (tag 18): never a base64 character.
  if (bytes[0] === 0x84 || bytes[0] === 0xd2) return bytes;
  const text = bytes.toString('latin1').replace(/\s+/g, '');
  if (text.length % 4 !== 0 || !BASE64.test(text)) {
    throw new AttestationError('MALFORMED', `${path} is neither a CBOR COSE_Sign1 nor base64 of one`);
  }
  return Buffer.from(text, 'base64');
}

/** `--root FILE.pem`: one PEM certificate. */
export function readRootFile(path: string): X509Certificate {
  const bytes = readBounded(path, MAX_PEM_FILE_BYTES);
  try {
    return new X509Certificate(bytes);
  } catch (error) {
    throw new RuntimeError('INPUT', `${path} is not a PEM certificate: ${(error as Error).message}`);
  }
}

/** `--public-key FILE`: a public key, PEM or DER, returned as DER SubjectPublicKeyInfo (what AWS's public_key holds). */
export function readPublicKeyFile(path: string): Buffer {
  const bytes = readBounded(path, MAX_PEM_FILE_BYTES);
  try {
    const key = bytes.toString('latin1').startsWith('-----BEGIN')
      ? createPublicKey(bytes.toString('latin1'))
      : createPublicKey({ key: bytes, format: 'der', type: 'spki' });
    return key.export({ type: 'spki', format: 'der' });
  } catch (error) {
    throw new RuntimeError('INPUT', `${path} is not a public key (PEM, or DER SubjectPublicKeyInfo): ${(error as Error).message}`);
  }
}

function readBounded(path: string, maxBytes: number): Buffer {
  const size = attempt(path, () => statSync(path).size);
  if (size > maxBytes) {
    throw new RuntimeError('INPUT', `${path} is ${size} bytes, at most ${maxBytes}`);
  }
  return attempt(path, () => readFileSync(path));
}

function attempt<T>(path: string, read: () => T): T {
  try {
    return read();
  } catch (error) {
    throw new RuntimeError('INPUT', `cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
}
