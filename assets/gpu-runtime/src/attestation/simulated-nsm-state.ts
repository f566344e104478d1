/**
 * Where the simulated NSM keeps its authorities between runs: one directory with the root
 * and intermediate certificates (PEM) and their private keys (PKCS#8 PEM, mode 0600). The
 * per-enclave leaf is never stored; every process that loads the state is a new enclave.
 */
import { createPrivateKey, createPublicKey, KeyObject, X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RuntimeError } from '../errors';

export interface Authority {
  readonly certificate: X509Certificate;
  readonly privateKey: KeyObject;
}

export interface SimulatedNsmState {
  readonly root: Authority;
  readonly intermediate: Authority;
}

/** The root certificate's file name in the state directory: what `--root` is given. */
export const ROOT_CERTIFICATE_FILE = 'root.pem';

/** A PEM certificate or P-384 key is under 2 KiB; anything far larger is not ours. */
const MAX_PEM_BYTES = 16 * 1024;

const FILES = {
  root: { certificate: ROOT_CERTIFICATE_FILE, privateKey: 'root.key.pem' },
  intermediate: { certificate: 'intermediate.pem', privateKey: 'intermediate.key.pem' },
} as const;

/** Writes the state; refuses to overwrite any file already there. */
export function saveState(dir: string, state: SimulatedNsmState): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    for (const name of ['root', 'intermediate'] as const) {
      const authority = state[name];
      writeFileSync(join(dir, FILES[name].certificate), authority.certificate.toString(), { flag: 'wx', mode: 0o644 });
      const pem = authority.privateKey.export({ type: 'pkcs8', format: 'pem' });
      writeFileSync(join(dir, FILES[name].privateKey), pem, { flag: 'wx', mode: 0o600 });
    }
  } catch (error) {
    throw stateError(dir, `cannot save: ${(error as Error).message}`);
  }
}

export function loadState(dir: string): SimulatedNsmState {
  const root = loadAuthority(dir, 'root');
  const intermediate = loadAuthority(dir, 'intermediate');
  if (!intermediate.certificate.checkIssued(root.certificate) || !intermediate.certificate.verify(root.certificate.publicKey)) {
    throw stateError(dir, `${FILES.intermediate.certificate} is not issued by ${FILES.root.certificate}`);
  }
  return { root, intermediate };
}

function loadAuthority(dir: string, name: keyof typeof FILES): Authority {
  const files = FILES[name];
  let authority: Authority;
  try {
    authority = {
      certificate: new X509Certificate(readPem(dir, files.certificate, false)),
      privateKey: createPrivateKey(readPem(dir, files.privateKey, true)),
    };
  } catch (error) {
    if (error instanceof RuntimeError) throw error;
    throw stateError(dir, `cannot read the ${name}: ${(error as Error).message}`);
  }
  const certified = authority.certificate.publicKey.export({ type: 'spki', format: 'der' });
  const held = createPublicKey(authority.privateKey).export({ type: 'spki', format: 'der' });
  if (!certified.equals(held)) {
    throw stateError(dir, `${files.privateKey} is not the key of ${files.certificate}`);
  }
  return authority;
}

/** Reads a PEM file of bounded size; a private key must not be readable by group or others. */
function readPem(dir: string, name: string, secret: boolean): string {
  const path = join(dir, name);
  const stat = statSync(path);
  if (stat.size > MAX_PEM_BYTES) {
    throw stateError(dir, `${name} is ${stat.size} bytes, at most ${MAX_PEM_BYTES}`);
  }
  if (secret && (stat.mode & 0o077) !== 0) {
    throw stateError(dir, `${name} is accessible to group or others (mode ${(stat.mode & 0o777).toString(8)}); it must be 600`);
  }
  return readFileSync(path, 'utf8');
}

function stateError(dir: string, reason: string): RuntimeError {
  return new RuntimeError('SIMULATED_NSM_STATE', `${dir}: ${reason}`);
}
