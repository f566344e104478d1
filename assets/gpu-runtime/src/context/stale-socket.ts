/**
 * A Unix socket path left behind by a context that died without closing its server would
 * make every restart fail with EADDRINUSE. Remove it, but only when it is a socket that
 * nobody answers on: never a regular file, never a live server's socket.
 */
import { lstatSync, unlinkSync } from 'node:fs';
import * as net from 'node:net';
import { TransportError } from '../protocol/transport';

export async function removeStaleSocket(path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch {
    return; // nothing there
  }
  if (!isSocket) throw new TransportError('LISTEN', `${path} exists and is not a socket; refusing to replace it`);
  const answered = await new Promise<boolean>((resolve) => {
    const probe = net.createConnection(path);
    probe.once('connect', () => { probe.destroy(); resolve(true); });
    probe.once('error', () => resolve(false));
  });
  if (answered) throw new TransportError('LISTEN', `another process is listening on ${path}`);
  unlinkSync(path);
}
