/**
 * The Nitro Secure Module inside a Nitro Enclave (/dev/nsm): attestation documents and the
 * enclave's own PCRs, for `egpu egp --nsm-device`. The simulated NSM (simulated-nsm.ts) is
 * local mode's stand-in; both produce documents that verify.ts checks the same way.
 *
 * The NSM takes one CBOR request and gives one CBOR response per ioctl (NSM_IOCTL_RAW),
 * both serde's externally tagged enums, as AWS's aws-nitro-enclaves-nsm-api writes them:
 *
 *   {"Attestation": {"user_data": bstr|null, "nonce": bstr|null, "public_key": bstr|null}}
 *       -> {"Attestation": {"document": bstr}}
 *   {"DescribePCR": {"index": uint}}  ->  {"DescribePCR": {"lock": bool, "data": bstr}}
 *   any request                       ->  {"Error": "<ErrorCode>"}   (InvalidArgument, InvalidIndex,
 *                                                                     InputTooLarge, InternalError, ...)
 *
 * The ioctl itself is the addon's (dist/nsm.node, native/nsm.c), on the libuv pool. Everything
 * here goes through an NsmTransport, so tests inject one that answers as the NSM would.
 */
import { existsSync } from 'node:fs';
import { CborError, CborValue, decodeCbor, encodeCbor } from '../../../../lib/shared/cbor';
import type { EnclaveIdentity } from '../abe/handshake';
import { ImagePcrs, PCR_BYTES } from '../abe/key-schedule';
import { RuntimeError } from '../errors';
import { loadAddon } from '../native-addon';
import { AttestationError } from './attestation-error';
import { LIMITS, parseAttestationDocument } from './document';

/** Where the NSM is inside an enclave. */
export const NSM_DEVICE_PATH = '/dev/nsm';
/** The driver's limits (include/uapi/linux/nsm.h): NSM_REQUEST_MAX_SIZE, NSM_RESPONSE_MAX_SIZE. */
export const NSM_REQUEST_MAX_BYTES = 0x1000;
export const NSM_RESPONSE_MAX_BYTES = 0x3000;
/** DescribePCR's index is a u16 in the NSM API. */
export const NSM_MAX_PCR_INDEX = 0xffff;

/** The fix every NSM_UNAVAILABLE names. */
const UNAVAILABLE_FIX = 'run inside a Nitro Enclave, or use --nsm-state for local mode';

/** The NSM requests this module makes. */
export type NsmRequestName = 'Attestation' | 'DescribePCR';

/** The NSM's ErrorCode names (aws-nitro-enclaves-nsm-api, api::ErrorCode). */
export const NSM_ERROR_CODES = [
  'Success', 'InvalidArgument', 'InvalidIndex', 'InvalidResponse', 'ReadOnlyIndex',
  'InvalidOperation', 'BufferTooSmall', 'InputTooLarge', 'InternalError',
] as const;

/**
 * Why an NSM request failed. Stable:
 * - NSM_UNAVAILABLE: no NSM here (the device does not exist, or the addon was not built).
 * - NSM_TOO_LARGE: the request is over the NSM's limits (refused before sending, or the NSM
 *   answered InputTooLarge, or the driver EMSGSIZE).
 * - NSM_REFUSED: the NSM answered with another Error (`nsmError` is its name).
 * - NSM_MALFORMED: the response is not what the request calls for (shape, types, keys, sizes,
 *   a document that does not parse or does not carry what was asked).
 * - NSM_IO: the device failed (`errno`: the system call's error, ETIMEDOUT, EIO, ...).
 * - NSM_INVALID_ARGUMENT: the caller asked for something the NSM API cannot express.
 */
export type NsmErrorCode = 'NSM_UNAVAILABLE' | 'NSM_TOO_LARGE' | 'NSM_REFUSED' | 'NSM_MALFORMED' | 'NSM_IO' | 'NSM_INVALID_ARGUMENT';

export class NsmError extends RuntimeError {
  declare readonly code: NsmErrorCode;

  constructor(
    code: NsmErrorCode,
    reason: string,
    /** The request that failed, when one was made. */
    readonly request?: NsmRequestName,
    /** The NSM's ErrorCode name, when it answered with one. */
    readonly nsmError?: string,
    /** The errno name, when a system call failed. */
    readonly errno?: string,
  ) {
    super(code, reason);
  }
}

/** One raw NSM round trip: the CBOR request in, the CBOR response out. */
export type NsmTransport = (request: Buffer) => Promise<Buffer>;

/** What dist/nsm.node exports (native/nsm.c). Failed system calls reject with errno codes. */
export interface NsmAddon {
  /** Opens `path`, makes one NSM_IOCTL_RAW with `request` (1 to 4096 bytes), closes; off the JavaScript thread. */
  request(path: string, request: Buffer): Promise<Buffer>;
  /** NSM_IOCTL_RAW as the addon computed it (_IOWR(0x0A, 0, struct nsm_raw)). */
  readonly ioctlNumber: number;
  readonly requestMaxBytes: number;
  readonly responseMaxBytes: number;
}

/** Returns the addon, or undefined when it was not built; throws when it exists but does not load. */
export type NsmLoader = () => NsmAddon | undefined;

/** dist/nsm.node (see native-addon.ts); undefined when it was not built. */
export function loadNsmAddon(): NsmAddon | undefined {
  return loadAddon<NsmAddon>('nsm');
}

/** What an attestation document is asked to carry; each field optional, as in the NSM API. */
export interface NsmAttestationRequest {
  readonly nonce?: Buffer;
  readonly userData?: Buffer;
  /** DER public key (the enclave's RSA key for KMS Recipient). */
  readonly publicKey?: Buffer;
}

/** A PCR as DescribePCR reports it. */
export interface PcrDescription {
  /** Whether the PCR is locked (read-only); PCR0-2 of an enclave always are. */
  readonly lock: boolean;
  readonly data: Buffer;
}

// ---- requests ------------------------------------------------------------------------------

/** The Attestation request's bytes: every field present, null when not given (as serde writes None). */
export function encodeAttestationRequest(request: NsmAttestationRequest): Buffer {
  checkField('Attestation', 'user_data', request.userData, LIMITS.userDataBytes);
  checkField('Attestation', 'nonce', request.nonce, LIMITS.nonceBytes);
  checkField('Attestation', 'public_key', request.publicKey, LIMITS.publicKeyBytes);
  return checkRequestSize('Attestation', encodeCbor(new Map([['Attestation', new Map<string, CborValue>([
    ['user_data', request.userData ?? null],
    ['nonce', request.nonce ?? null],
    ['public_key', request.publicKey ?? null],
  ])]])));
}

/** The DescribePCR request's bytes. */
export function encodeDescribePcrRequest(index: number): Buffer {
  if (!Number.isSafeInteger(index) || index < 0 || index > NSM_MAX_PCR_INDEX) {
    throw new NsmError('NSM_INVALID_ARGUMENT', `DescribePCR: the PCR index must be an integer from 0 to ${NSM_MAX_PCR_INDEX}, got ${index}`, 'DescribePCR');
  }
  return checkRequestSize('DescribePCR', encodeCbor(new Map([['DescribePCR', new Map([['index', index]])]])));
}

/** The NSM's own per-field limits (AWS: user_data and nonce 512 bytes, public_key 1024). */
function checkField(request: NsmRequestName, field: string, value: Buffer | undefined, max: number): void {
  if (value !== undefined && !Buffer.isBuffer(value)) {
    throw new NsmError('NSM_INVALID_ARGUMENT', `${request}: ${field} must be a Buffer`, request);
  }
  if (value !== undefined && value.length > max) {
    throw new NsmError('NSM_TOO_LARGE', `${request}: ${field} is ${value.length} bytes, the NSM takes at most ${max}`, request);
  }
}

function checkRequestSize(request: NsmRequestName, bytes: Buffer): Buffer {
  if (bytes.length > NSM_REQUEST_MAX_BYTES) {
    throw new NsmError('NSM_TOO_LARGE', `${request}: the request is ${bytes.length} bytes, the NSM takes at most ${NSM_REQUEST_MAX_BYTES}`, request);
  }
  return bytes;
}

// ---- responses -----------------------------------------------------------------------------

/** The document of an Attestation response (not yet parsed: see NsmDevice.attest). */
export function decodeAttestationResponse(bytes: Buffer): Buffer {
  const body = decodeResponse('Attestation', bytes, ['document']);
  const document = body.get('document');
  if (!Buffer.isBuffer(document) || document.length === 0) {
    throw malformed('Attestation', 'document must be a non-empty byte string');
  }
  if (document.length > LIMITS.documentBytes) {
    throw malformed('Attestation', `the document is ${document.length} bytes, at most ${LIMITS.documentBytes}`);
  }
  return document;
}

/** The lock and value of a DescribePCR response. */
export function decodeDescribePcrResponse(bytes: Buffer): PcrDescription {
  const body = decodeResponse('DescribePCR', bytes, ['lock', 'data']);
  const lock = body.get('lock');
  const data = body.get('data');
  if (typeof lock !== 'boolean') throw malformed('DescribePCR', 'lock must be a boolean');
  // SHA-256, -384 or -512 by the NSM API; a Nitro enclave's bank is SHA-384.
  if (!Buffer.isBuffer(data) || ![32, 48, 64].includes(data.length)) {
    throw malformed('DescribePCR', 'data must be a 32-, 48- or 64-byte string');
  }
  return { lock, data };
}

/**
 * A response of exactly one entry: `{request: {exactly these keys}}`, or `{"Error": name}`,
 * which becomes NSM_REFUSED (NSM_TOO_LARGE for InputTooLarge) naming the request and error.
 */
function decodeResponse(request: NsmRequestName, bytes: Buffer, keys: readonly string[]): Map<CborValue, CborValue> {
  if (bytes.length === 0) throw malformed(request, 'the response is empty');
  if (bytes.length > NSM_RESPONSE_MAX_BYTES) {
    throw malformed(request, `the response is ${bytes.length} bytes, at most ${NSM_RESPONSE_MAX_BYTES}`);
  }
  let value: CborValue;
  try {
    value = decodeCbor(bytes);
  } catch (error) {
    if (error instanceof CborError) throw malformed(request, `the response is not valid CBOR: ${error.message}`);
    throw error;
  }
  if (!(value instanceof Map) || value.size !== 1) throw malformed(request, 'the response must be a map of one entry');
  const [[variant, body]] = [...value];
  if (variant === 'Error') throw refusal(request, body);
  if (variant !== request) {
    throw malformed(request, `the response is ${typeof variant === 'string' ? `'${printable(variant)}'` : 'not a text key'}, not '${request}' or 'Error'`);
  }
  if (!(body instanceof Map)) throw malformed(request, `'${request}' must hold a map`);
  const unexpected = [...body.keys()].filter((key) => typeof key !== 'string' || !keys.includes(key));
  const missing = keys.filter((key) => !body.has(key));
  if (unexpected.length > 0 || missing.length > 0) {
    throw malformed(request, `'${request}' must have exactly the keys ${keys.join(', ')}`);
  }
  return body;
}

function refusal(request: NsmRequestName, name: CborValue): NsmError {
  if (typeof name !== 'string' || !/^[A-Za-z]{1,64}$/.test(name)) {
    return malformed(request, 'Error must hold an ErrorCode name');
  }
  const known = (NSM_ERROR_CODES as readonly string[]).includes(name) ? '' : ' (not an ErrorCode this runtime knows)';
  if (name === 'InputTooLarge') {
    return new NsmError('NSM_TOO_LARGE', `${request}: the NSM answered InputTooLarge`, request, name);
  }
  return new NsmError('NSM_REFUSED', `${request}: the NSM answered ${name}${known}`, request, name);
}

function malformed(request: NsmRequestName, reason: string): NsmError {
  return new NsmError('NSM_MALFORMED', `${request}: ${reason}`, request);
}

/** A response's text, shortened and without control characters, for a message. */
function printable(text: string): string {
  const clean = text.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
  return clean.length > 40 ? `${clean.slice(0, 40)}...` : clean;
}

// ---- the device ----------------------------------------------------------------------------

export interface NsmDeviceOptions {
  /** The device; default /dev/nsm. */
  readonly path?: string;
  /** Where the addon comes from; default dist/nsm.node. */
  readonly loader?: NsmLoader;
}

/** The NSM: attestation documents (an Attester for the ABE handshake) and PCRs. */
export class NsmDevice {
  /**
   * The NSM at `path` (default /dev/nsm) through the addon. NSM_UNAVAILABLE when the device
   * does not exist or the addon was not built; nothing is opened until the first request.
   */
  static open(options: NsmDeviceOptions = {}): NsmDevice {
    const devicePath = options.path ?? NSM_DEVICE_PATH;
    if (!existsSync(devicePath)) {
      throw new NsmError('NSM_UNAVAILABLE', `${devicePath} does not exist (there is a Nitro Secure Module only inside a Nitro Enclave): ${UNAVAILABLE_FIX}`);
    }
    const addon = (options.loader ?? loadNsmAddon)();
    if (addon === undefined) {
      throw new NsmError('NSM_UNAVAILABLE', `the NSM addon dist/nsm.node was not built (Linux with a C toolchain: npm run build:runtime): ${UNAVAILABLE_FIX}`);
    }
    return new NsmDevice(addonTransport(addon, devicePath), devicePath);
  }

  /** An NSM behind any transport (tests answer with the simulated NSM's documents). */
  static withTransport(transport: NsmTransport, description = 'an injected NSM'): NsmDevice {
    return new NsmDevice(transport, description);
  }

  private constructor(
    private readonly transport: NsmTransport,
    /** The device path, or what the transport is. */
    readonly description: string,
  ) {}

  /**
   * An attestation document carrying `nonce`, `userData` and `publicKey`. The document is
   * parsed with the verifier's limits and must carry exactly what was asked; that it is
   * genuine is for whoever receives it to verify.
   */
  async attest(request: NsmAttestationRequest): Promise<Buffer> {
    const response = await this.call('Attestation', encodeAttestationRequest(request));
    const document = decodeAttestationResponse(response);
    let parsed;
    try {
      parsed = parseAttestationDocument(document);
    } catch (error) {
      if (error instanceof AttestationError) throw malformed('Attestation', `the document does not parse: ${error.message}`);
      throw error;
    }
    for (const [field, asked, carried] of [
      ['nonce', request.nonce, parsed.nonce],
      ['user_data', request.userData, parsed.userData],
      ['public_key', request.publicKey, parsed.publicKey],
    ] as const) {
      if (!(asked ?? Buffer.alloc(0)).equals(carried ?? Buffer.alloc(0))) {
        throw malformed('Attestation', `the document's ${field} is not the one requested`);
      }
    }
    return document;
  }

  /** A PCR's value and lock. */
  async describePcr(index: number): Promise<PcrDescription> {
    const request = encodeDescribePcrRequest(index);
    return decodeDescribePcrResponse(await this.call('DescribePCR', request));
  }

  /** PCR0, PCR1 and PCR2: the image, kernel and application measurements the session key is salted with. */
  async imagePcrs(): Promise<ImagePcrs> {
    const read = async (index: number): Promise<Buffer> => {
      const { data } = await this.describePcr(index);
      if (data.length !== PCR_BYTES) {
        throw malformed('DescribePCR', `PCR${index} is ${data.length} bytes, an enclave's PCRs are SHA-384 (${PCR_BYTES})`);
      }
      return data;
    };
    // One request at a time: the driver serialises them anyway.
    const pcr0 = await read(0);
    const pcr1 = await read(1);
    const pcr2 = await read(2);
    return [pcr0, pcr1, pcr2];
  }

  private async call(request: NsmRequestName, bytes: Buffer): Promise<Buffer> {
    let response: unknown;
    try {
      response = await this.transport(bytes);
    } catch (error) {
      throw transportError(request, this.description, error);
    }
    if (!Buffer.isBuffer(response)) throw malformed(request, 'the transport returned no Buffer');
    return response;
  }
}

/** The addon as a transport on `devicePath`. */
function addonTransport(addon: NsmAddon, devicePath: string): NsmTransport {
  return (request) => addon.request(devicePath, request);
}

/** A transport's failure, typed: the device gone is NSM_UNAVAILABLE, EMSGSIZE NSM_TOO_LARGE, the rest NSM_IO. */
function transportError(request: NsmRequestName, where: string, error: unknown): NsmError {
  if (error instanceof NsmError) return error;
  const errno = typeof (error as { code?: unknown })?.code === 'string' ? (error as { code: string }).code : undefined;
  const syscall = (error as { syscall?: unknown })?.syscall;
  const detail = error instanceof Error ? error.message : String(error);
  if (errno !== undefined && ['ENOENT', 'ENODEV', 'ENXIO'].includes(errno) && syscall === 'open') {
    return new NsmError('NSM_UNAVAILABLE', `${request}: cannot open ${where} (${errno}): ${UNAVAILABLE_FIX}`, request, undefined, errno);
  }
  if (errno === 'EMSGSIZE') {
    return new NsmError('NSM_TOO_LARGE', `${request}: the driver refused the request as too large (${detail})`, request, undefined, errno);
  }
  return new NsmError('NSM_IO', `${request} on ${where} failed: ${errno !== undefined ? `${errno}: ` : ''}${detail}`, request, undefined, errno);
}

/**
 * The enclave's identity from its NSM: documents from `device`, and PCR0-2 read from it, so
 * the session key is salted with the measurements the documents carry. `publicKey` (DER) goes
 * into every document's public_key, for KMS Recipient.
 */
export async function deviceEnclave(device: NsmDevice, publicKey?: Buffer): Promise<EnclaveIdentity> {
  const pcrs = await device.imagePcrs();
  return {
    pcrs,
    publicKey,
    attester: { attest: (request) => device.attest(request) },
  };
}

/** True when PCR0-2 are all zero: an enclave started in debug mode, which no allowlist should admit. */
export function isDebugMode(pcrs: ImagePcrs): boolean {
  return pcrs.every((pcr) => pcr.every((byte) => byte === 0));
}
