/**
 * Control messages: the records that are not ABE frames. Each is a CBOR map with a type `t`
 * and a fixed set of fields, decoded strictly (unknown types and fields refused, every
 * length bounded). See PROTOCOL.md for who sends which, when.
 */
import { CborValue, decodeCbor, encodeCbor } from '../../../../lib/shared/cbor';
import { fitReason } from '../errors';
import type { ComputeDevice } from '../kernels/kernel';
import { WIRE_ERROR_CODES, WireError, WireErrorCode } from './wire-error';

export const MAX_CONTROL_BYTES = 32 * 1024;
const MAX_REASON_CHARS = 512;
/** How much of an unexpected field's name a refusal quotes. */
const MAX_QUOTED_KEY_CHARS = 64;
const MAX_KERNEL_CHARS = 64;
const COMPUTE_DEVICES: readonly ComputeDevice[] = ['gpu', 'cpu'];

export type ControlMessage =
  /** EGP -> SGS: start a session on this connection. */
  | { t: 'open' }
  /** SGS -> context: make a hello for a new session on this connection. */
  | { t: 'hello-request' }
  /** context -> SGS -> EGP: the context's hello (abe/handshake-messages encoding). */
  | { t: 'hello'; hello: Buffer }
  /** EGP -> SGS -> context: the enclave's reply, with its attestation document. */
  | { t: 'reply'; reply: Buffer }
  /** context -> SGS -> EGP: the session is established. */
  | { t: 'ready'; session: Buffer }
  /**
   * context -> SGS -> EGP, after the last result frame of operation n: what ran and for how
   * long, and, for a launch that ran, on which device. `queueUs` is added by SGS (time the
   * operation waited for the context).
   */
  | { t: 'done'; n: number; kernel: string; codeSha384: Buffer; computeUs: number; device?: ComputeDevice; queueUs?: number }
  /** Any direction: a refusal or failure, for operation n when it concerns one. */
  | { t: 'error'; code: WireErrorCode; reason: string; n?: number; retryAfterMs?: number };

/**
 * Encodes a control record. An error's reason is cut to what a peer accepts (its detail may
 * quote what the peer sent), so an error can always be sent.
 */
export function encodeControl(message: ControlMessage): Buffer {
  const fitted = message.t === 'error' ? { ...message, reason: fitReason(message.reason, MAX_REASON_CHARS) } : message;
  const map = new Map<CborValue, CborValue>(Object.entries(fitted).filter(([, v]) => v !== undefined));
  const body = encodeCbor(map);
  if (body.length > MAX_CONTROL_BYTES) {
    throw new WireError('TOO_LARGE', `a ${message.t} message of ${body.length} bytes exceeds ${MAX_CONTROL_BYTES}`);
  }
  const record = Buffer.allocUnsafe(4 + body.length);
  record.writeUInt32BE(body.length, 0);
  body.copy(record, 4);
  return record;
}

/** Decodes a control record (length prefix included). */
export function decodeControl(record: Buffer): ControlMessage {
  const body = record.subarray(4);
  if (body.length > MAX_CONTROL_BYTES) {
    throw new WireError('TOO_LARGE', `a control message of ${body.length} bytes exceeds ${MAX_CONTROL_BYTES}`);
  }
  let value: CborValue;
  try {
    value = decodeCbor(body);
  } catch (error) {
    throw new WireError('MALFORMED', `control message: ${(error as Error).message}`);
  }
  if (!(value instanceof Map)) throw new WireError('MALFORMED', 'a control message must be a CBOR map');
  const fields = new Fields(value);
  const t = fields.text('t', 32);
  let message: ControlMessage;
  switch (t) {
    case 'open': message = { t }; break;
    case 'hello-request': message = { t }; break;
    case 'hello': message = { t, hello: fields.bytes('hello', 4096) }; break;
    case 'reply': message = { t, reply: fields.bytes('reply', 20 * 1024) }; break;
    case 'ready': message = { t, session: fields.bytes('session', 16, 16) }; break;
    case 'done':
      message = {
        t,
        n: fields.uint('n'),
        kernel: fields.text('kernel', MAX_KERNEL_CHARS),
        codeSha384: fields.bytes('codeSha384', 48, 48),
        computeUs: fields.uint('computeUs'),
        device: fields.optionalChoice('device', COMPUTE_DEVICES),
        queueUs: fields.optionalUint('queueUs'),
      };
      break;
    case 'error': {
      const code = fields.text('code', 16) as WireErrorCode;
      if (!WIRE_ERROR_CODES.includes(code)) throw new WireError('MALFORMED', `unknown error code '${code}'`);
      message = { t, code, reason: fields.text('reason', MAX_REASON_CHARS), n: fields.optionalUint('n'), retryAfterMs: fields.optionalUint('retryAfterMs') };
      break;
    }
    default:
      throw new WireError('MALFORMED', `unknown control message type '${t}'`);
  }
  fields.expectAllRead(t);
  return message;
}

/** Reads the fields of a control map once each, checking types and sizes. */
class Fields {
  private readonly read = new Set<string>();
  constructor(private readonly map: Map<CborValue, CborValue>) {}

  text(name: string, maxChars: number): string {
    const value = this.take(name);
    if (typeof value !== 'string' || value.length === 0 || value.length > maxChars) {
      throw new WireError('MALFORMED', `field '${name}' must be text of 1 to ${maxChars} characters`);
    }
    return value;
  }

  bytes(name: string, maxBytes: number, minBytes = 1): Buffer {
    const value = this.take(name);
    if (!Buffer.isBuffer(value) || value.length < minBytes || value.length > maxBytes) {
      throw new WireError('MALFORMED', `field '${name}' must be ${minBytes === maxBytes ? `${maxBytes}` : `${minBytes} to ${maxBytes}`} bytes`);
    }
    return value;
  }

  uint(name: string): number {
    const value = this.take(name);
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
      throw new WireError('MALFORMED', `field '${name}' must be an unsigned integer`);
    }
    return value;
  }

  optionalUint(name: string): number | undefined {
    return this.map.has(name) ? this.uint(name) : undefined;
  }

  optionalChoice<T extends string>(name: string, choices: readonly T[]): T | undefined {
    if (!this.map.has(name)) return undefined;
    const value = this.take(name);
    if (!choices.includes(value as T)) throw new WireError('MALFORMED', `field '${name}' must be one of ${choices.join(', ')}`);
    return value as T;
  }

  expectAllRead(t: string): void {
    for (const key of this.map.keys()) {
      if (typeof key !== 'string' || !this.read.has(key)) {
        throw new WireError('MALFORMED', `unexpected field ${JSON.stringify(String(key).slice(0, MAX_QUOTED_KEY_CHARS))} in a '${t}' message`);
      }
    }
  }

  private take(name: string): CborValue {
    if (!this.map.has(name)) throw new WireError('MALFORMED', `field '${name}' is missing`);
    this.read.add(name);
    return this.map.get(name);
  }
}
