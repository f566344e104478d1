/**
 * The EGP socket API's messages (README, "EGP socket API"): one JSON object per line.
 *
 *   request   {"id": 1, "method": "malloc", "params": {"size": 4096}}
 *   response  {"id": 1, "result": {"buffer": 1}}
 *             {"id": 1, "error": {"code": "OPERATION_FAILED", "reason": "...", "remote": "NO_SUCH_BUFFER"}}
 *
 * Bytes travel as base64. Requests are checked strictly here (unknown methods and params
 * refused), so the client below only ever sees well-typed calls.
 */
import { EgpError } from './errors';
import type { KernelArgValue } from './kernel-args';

export const SOCKET_METHODS = ['malloc', 'memcpyHtoD', 'launchKernel', 'memcpyDtoH', 'free', 'synchronize'] as const;
export type SocketMethod = (typeof SOCKET_METHODS)[number];

export type SocketCall =
  | { method: 'malloc'; size: number }
  | { method: 'memcpyHtoD'; buffer: number; data: Buffer }
  | { method: 'launchKernel'; kernel: string; args: Record<string, KernelArgValue>; digest?: Buffer }
  | { method: 'memcpyDtoH'; buffer: number }
  | { method: 'free'; buffer: number }
  | { method: 'synchronize' };

export type RequestId = string | number;

export interface SocketRequest {
  readonly id: RequestId;
  readonly call: SocketCall;
}

/** A request that cannot be served as written; `id` is set when the line had a usable one. */
export class BadRequest extends Error {
  constructor(readonly reason: string, readonly id: RequestId | null = null) {
    super(reason);
  }
}

const PARAMS: Record<SocketMethod, readonly string[]> = {
  malloc: ['size'],
  memcpyHtoD: ['buffer', 'data'],
  launchKernel: ['kernel', 'args', 'digest'],
  memcpyDtoH: ['buffer'],
  free: ['buffer'],
  synchronize: [],
};
/**
 * An unexpected failure while reading a request that had a usable id: answered INTERNAL on
 * that id, so the client can match it (a BadRequest is the request's fault; this is not).
 */
export class RequestFailure extends Error {
  constructor(readonly id: RequestId, readonly error: unknown) {
    super(`reading request ${JSON.stringify(id)} failed: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/**
 * Canonical base64 (padded to a multiple of 4). Linear: the grouped form
 * /^(?:[A-Za-z0-9+/]{4})*...$/ backtracks one stack frame per group, and V8 throws
 * RangeError past about 3.3 MB of data.
 */
const BASE64_CHARS = /^[A-Za-z0-9+/]*={0,2}$/;

export function isBase64(text: string): boolean {
  return text.length % 4 === 0 && BASE64_CHARS.test(text);
}

/**
 * Reads one request line. Throws BadRequest for a request that cannot be served as written,
 * and RequestFailure (with the id) for anything unexpected once the id is known.
 */
export function parseRequest(line: string): SocketRequest {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw new BadRequest('the line is not JSON');
  }
  if (!isObject(value)) throw new BadRequest('a request is a JSON object {id, method, params}');
  const id = value.id;
  if (!((typeof id === 'string' && id.length <= 128) || (typeof id === 'number' && Number.isSafeInteger(id)))) {
    throw new BadRequest("'id' must be an integer or a string of at most 128 characters");
  }
  try {
    return parseCall(id, value);
  } catch (error) {
    if (error instanceof BadRequest) throw error;
    throw new RequestFailure(id, error);
  }
}

function parseCall(id: RequestId, value: Record<string, unknown>): SocketRequest {
  const fail = (reason: string) => new BadRequest(reason, id);
  const method = value.method;
  if (typeof method !== 'string' || !(SOCKET_METHODS as readonly string[]).includes(method)) {
    throw fail(`'method' must be one of ${SOCKET_METHODS.join(', ')}`);
  }
  const params = value.params ?? {};
  if (!isObject(params)) throw fail("'params' must be an object");
  const allowed = PARAMS[method as SocketMethod];
  const unknown = Object.keys(params).filter((key) => !allowed.includes(key));
  if (unknown.length > 0) throw fail(`${method} takes no parameter '${unknown[0].slice(0, 64)}'`);
  const uint = (name: string): number => {
    const v = params[name];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw fail(`${method}: '${name}' must be an unsigned integer`);
    return v;
  };
  const bytes = (name: string): Buffer => {
    const v = params[name];
    if (typeof v !== 'string' || !isBase64(v)) throw fail(`${method}: '${name}' must be base64`);
    return Buffer.from(v, 'base64');
  };
  switch (method as SocketMethod) {
    case 'malloc': return { id, call: { method: 'malloc', size: uint('size') } };
    case 'memcpyHtoD': return { id, call: { method: 'memcpyHtoD', buffer: uint('buffer'), data: bytes('data') } };
    case 'memcpyDtoH': return { id, call: { method: 'memcpyDtoH', buffer: uint('buffer') } };
    case 'free': return { id, call: { method: 'free', buffer: uint('buffer') } };
    case 'synchronize': return { id, call: { method: 'synchronize' } };
    case 'launchKernel': {
      const kernel = params.kernel;
      if (typeof kernel !== 'string') throw fail("launchKernel: 'kernel' must be a string");
      const args = params.args ?? {};
      if (!isObject(args)) throw fail("launchKernel: 'args' must be an object");
      let digest: Buffer | undefined;
      if (params.digest !== undefined) {
        if (typeof params.digest !== 'string' || !/^[0-9a-fA-F]{96}$/.test(params.digest)) throw fail("launchKernel: 'digest' must be 96 hex characters (SHA-384)");
        digest = Buffer.from(params.digest, 'hex');
      }
      return { id, call: { method: 'launchKernel', kernel, args: args as Record<string, KernelArgValue>, digest } };
    }
  }
}

/** The response line for a result. */
export function resultLine(id: RequestId, result: Record<string, unknown>): string {
  return `${JSON.stringify({ id, result })}\n`;
}

/** The response line for an error: EgpError codes, BAD_REQUEST, or INTERNAL (no detail) for anything else (RequestFailure included). */
export function errorLine(id: RequestId | null, error: unknown): string {
  let body: { code: string; reason: string; remote?: string };
  if (error instanceof EgpError) body = { code: error.code, reason: error.reason, remote: error.remote };
  else if (error instanceof BadRequest) body = { code: 'BAD_REQUEST', reason: error.reason };
  else body = { code: 'INTERNAL', reason: 'internal error' };
  return `${JSON.stringify({ id, error: body })}\n`;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
