/**
 * Searches a process's memory and files for byte patterns: the canary test's eyes. A V8
 * heap snapshot holds the JavaScript heap's strings and objects but not the contents of
 * Buffers (they live outside the heap), so the test also reads the process's readable
 * memory through /proc/<pid>/mem, where Buffers, sockets' user-space copies and everything
 * else are.
 */
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';

/** The forms a secret could take in memory or text: raw, hex (both cases) and base64. */
export function encodings(secret: Buffer): Buffer[] {
  const hex = secret.toString('hex');
  return [secret, Buffer.from(hex), Buffer.from(hex.toUpperCase()), Buffer.from(secret.toString('base64')), Buffer.from(secret.toString('base64url'))];
}

/** The names of `patterns` that occur in `haystack`. */
export function found(haystack: Buffer, patterns: ReadonlyMap<string, Buffer[]>): string[] {
  return [...patterns].filter(([, forms]) => forms.some((form) => haystack.includes(form))).map(([name]) => name);
}

const CHUNK = 16 * 1024 * 1024;

/**
 * Scans every readable mapping of `pid` for the patterns (chunked, overlapping by the longest
 * pattern). Returns the names found and the bytes scanned, or undefined where /proc/<pid>/mem
 * cannot be read (not Linux, or ptrace is restricted).
 */
export function scanProcessMemory(pid: number, patterns: ReadonlyMap<string, Buffer[]>): { found: Set<string>; bytes: number } | undefined {
  let fd: number;
  let maps: string;
  try {
    maps = readFileSync(`/proc/${pid}/maps`, 'utf8');
    fd = openSync(`/proc/${pid}/mem`, 'r');
  } catch {
    return undefined;
  }
  const longest = Math.max(...[...patterns.values()].flat().map((p) => p.length));
  const result = new Set<string>();
  let bytes = 0;
  const buffer = Buffer.alloc(CHUNK + longest);
  try {
    for (const line of maps.split('\n')) {
      const match = /^([0-9a-f]+)-([0-9a-f]+) r/.exec(line);
      if (!match || line.includes('[vvar') || line.includes('[vsyscall]')) continue;
      const start = BigInt(`0x${match[1]}`);
      const end = BigInt(`0x${match[2]}`);
      let carried = 0;
      for (let at = start; at < end; at += BigInt(CHUNK)) {
        const length = Number(end - at < BigInt(CHUNK) ? end - at : BigInt(CHUNK));
        let read: number;
        try {
          read = readSync(fd, buffer, carried, length, at);
        } catch {
          break; // an unreadable page (guard, device): the rest of this mapping is skipped
        }
        bytes += read;
        const window = buffer.subarray(0, carried + read);
        for (const name of found(window, patterns)) result.add(name);
        carried = Math.min(longest, window.length);
        window.copy(buffer, 0, window.length - carried);
      }
    }
  } finally {
    closeSync(fd);
  }
  return { found: result, bytes };
}
