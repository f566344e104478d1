/**
 * The two ABE v1 handshake messages, which SGS relays without being able to alter them
 * unnoticed (ABE.md, "Handshake"). Each is a CBOR map with exactly these keys:
 *
 *   context hello  { "v": 1, "session": bstr(16), "nonce": bstr(32), "publicKey": bstr(97) }
 *   enclave reply  { "v": 1, "session": bstr(16), "attestation": bstr(1..16384) }
 *
 * in that key order with shortest-form CBOR heads: the one encoding each message has.
 *
 * The reply's session id only routes it back to its hello; what binds it is the attestation
 * document, whose nonce is the hello's and whose user_data is the enclave's ECDH public key.
 */
import { encodeCbor } from '../../../../lib/shared/cbor';
import { boundedBytesField, bytesField, decodeStrictMap } from './cbor-fields';
import { AbeError, expectLength } from './errors';
import { ABE_VERSION } from './frame-header';
import { P384_PUBLIC_KEY_BYTES, SESSION_ID_BYTES } from './key-schedule';
import { MAX_ATTESTATION_BYTES } from './limits';

export const HELLO_NONCE_BYTES = 32;
const MAX_MESSAGE_BYTES = MAX_ATTESTATION_BYTES + 256;

export interface ContextHello {
  readonly sessionId: Buffer;
  readonly nonce: Buffer;
  /** The context's ephemeral ECDH P-384 public key, SEC1 uncompressed. */
  readonly contextPublicKey: Buffer;
}

export interface EnclaveReply {
  readonly sessionId: Buffer;
  /** The NSM attestation document (COSE_Sign1) with the hello's nonce and the enclave's ECDH key as user_data. */
  readonly attestationDocument: Buffer;
}

export function encodeContextHello(hello: ContextHello): Buffer {
  checkContextHello(hello);
  return encodeCbor(new Map<string, number | Buffer>([
    ['v', ABE_VERSION],
    ['session', hello.sessionId],
    ['nonce', hello.nonce],
    ['publicKey', hello.contextPublicKey],
  ]));
}

export function decodeContextHello(bytes: Buffer): ContextHello {
  const what = 'context hello';
  const map = decodeStrictMap(bytes, MAX_MESSAGE_BYTES, ['v', 'session', 'nonce', 'publicKey'], what);
  checkVersion(map.get('v'), what);
  const hello = {
    sessionId: bytesField(map, 'session', SESSION_ID_BYTES, what),
    nonce: bytesField(map, 'nonce', HELLO_NONCE_BYTES, what),
    contextPublicKey: bytesField(map, 'publicKey', P384_PUBLIC_KEY_BYTES, what),
  };
  expectCanonical(bytes, encodeContextHello(hello), what);
  return hello;
}

export function encodeEnclaveReply(reply: EnclaveReply): Buffer {
  checkEnclaveReply(reply);
  return encodeCbor(new Map<string, number | Buffer>([
    ['v', ABE_VERSION],
    ['session', reply.sessionId],
    ['attestation', reply.attestationDocument],
  ]));
}

export function decodeEnclaveReply(bytes: Buffer): EnclaveReply {
  const what = 'enclave reply';
  const map = decodeStrictMap(bytes, MAX_MESSAGE_BYTES, ['v', 'session', 'attestation'], what);
  checkVersion(map.get('v'), what);
  const reply = {
    sessionId: bytesField(map, 'session', SESSION_ID_BYTES, what),
    attestationDocument: boundedBytesField(map, 'attestation', MAX_ATTESTATION_BYTES, what),
  };
  expectCanonical(bytes, encodeEnclaveReply(reply), what);
  return reply;
}

/** Field sizes of a hello built in memory rather than decoded (the point itself is checked at ECDH). */
export function checkContextHello(hello: ContextHello): void {
  expectLength('context hello session id', hello.sessionId, SESSION_ID_BYTES, 'MALFORMED');
  expectLength('context hello nonce', hello.nonce, HELLO_NONCE_BYTES, 'MALFORMED');
  expectLength('context hello public key', hello.contextPublicKey, P384_PUBLIC_KEY_BYTES, 'INVALID_PUBLIC_KEY');
}

export function checkEnclaveReply(reply: EnclaveReply): void {
  expectLength('enclave reply session id', reply.sessionId, SESSION_ID_BYTES, 'MALFORMED');
  const { length } = reply.attestationDocument;
  if (length === 0) throw new AbeError('MALFORMED', 'the enclave reply carries an empty attestation document');
  if (length > MAX_ATTESTATION_BYTES) {
    throw new AbeError('TOO_LARGE', `an attestation document of ${length} bytes exceeds the ${MAX_ATTESTATION_BYTES}-byte limit`);
  }
}

/**
 * Each message has one encoding, the one the encoders write (the keys in the order above,
 * shortest-form heads): another key order or a longer head than needed is refused, so a
 * relay cannot re-encode a message into a different byte string with the same meaning.
 */
function expectCanonical(received: Buffer, canonical: Buffer, what: string): void {
  if (!received.equals(canonical)) throw new AbeError('MALFORMED', `${what}: not in its one accepted encoding (keys in order, shortest-form heads)`);
}

function checkVersion(version: unknown, what: string): void {
  if (version !== ABE_VERSION) throw new AbeError('MALFORMED', `${what} version must be ${ABE_VERSION}`);
}
