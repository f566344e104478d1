/**
 * The files `egpu artefact` reads and writes. Failures to open or read them are
 * RuntimeErrors (exit 1) naming the path, and output appears under its name only complete.
 */
import { randomBytes } from 'node:crypto';
import { FileHandle, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { RuntimeError } from '../errors';

/** A file opened for streaming, with its size when it is a regular file (for progress). */
export interface InputFile {
  readonly stream: Readable;
  readonly size?: number;
}

/** Opens `path` for reading; `INPUT` when it cannot be, or is a directory. */
export async function openInputFile(path: string): Promise<InputFile> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    throw fileError('INPUT', `cannot read ${path}`, error);
  }
  const stats = await handle.stat();
  if (stats.isDirectory()) {
    await handle.close();
    throw new RuntimeError('INPUT', `cannot read ${path}: it is a directory`);
  }
  return { stream: handle.createReadStream(), size: stats.isFile() ? stats.size : undefined };
}

/** The whole of a small file, refused (`INPUT`) when larger than `maxBytes`. */
export async function readSmallFile(path: string, maxBytes: number): Promise<Buffer> {
  try {
    const size = (await stat(path)).size;
    if (size > maxBytes) {
      throw new RuntimeError('INPUT', `${path} is ${size} bytes, at most ${maxBytes}`);
    }
    return await readFile(path);
  } catch (error) {
    throw fileError('INPUT', `cannot read ${path}`, error);
  }
}

/**
 * Runs `write` on a stream to a new temporary file next to `path` (created with `mode`),
 * and renames it to `path` only when `write` succeeds; otherwise removes it. So a failed
 * or interrupted run never leaves a partial artefact, or an unauthenticated plaintext
 * prefix, under the name a consumer will read.
 */
export async function writeFileAtomically<T>(path: string, mode: number, write: (output: Writable) => Promise<T>): Promise<T> {
  const temporary = join(dirname(path), `.${basename(path)}.${randomBytes(8).toString('hex')}.partial`);
  let handle: FileHandle;
  try {
    handle = await open(temporary, 'wx', mode);
  } catch (error) {
    throw fileError('OUTPUT', `cannot write ${path}`, error);
  }
  const output = handle.createWriteStream();
  try {
    const result = await write(output);
    await rename(temporary, path);
    return result;
  } catch (error) {
    output.destroy();
    await rm(temporary, { force: true });
    const syscall = (error as NodeJS.ErrnoException | undefined)?.syscall ?? 'I/O';
    throw fileError('IO', `${syscall} failed while writing ${path}`, error);
  }
}

/** A RuntimeError stays as it is; a system error (it has an errno code) becomes `code`; anything else is a bug and propagates. */
function fileError(code: 'INPUT' | 'OUTPUT' | 'IO', context: string, error: unknown): unknown {
  if (error instanceof RuntimeError) return error;
  const errno = (error as NodeJS.ErrnoException | undefined)?.code;
  return typeof errno === 'string' ? new RuntimeError(code, `${context}: ${errno}`) : error;
}
