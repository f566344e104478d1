/**
 * Connections a server turns away (at its connection or session limit): each gets its last
 * words, what it sends meanwhile is read and dropped, and its socket is destroyed once the
 * words are written, or after REFUSAL_LINGER_MS when they cannot be (a peer that does not
 * read). So a refused connection holds no descriptor for long, and destroyAll() lets the
 * server's close() complete without waiting for peers that keep their side open.
 */
import type { Socket } from 'node:net';

/** The longest a refused (or ended) connection is kept for its last words to be written. */
export const REFUSAL_LINGER_MS = 1_000;

/**
 * Destroys whichever of `sockets` is still open after `ms` (unref'd: it keeps no process
 * alive), for connections that were end()ed and close only once a peer reads.
 */
export function destroyAfter(sockets: readonly Socket[], ms = REFUSAL_LINGER_MS): void {
  const open = sockets.filter((socket) => !socket.destroyed);
  if (open.length === 0) return;
  const timer = setTimeout(() => { for (const socket of open) socket.destroy(); }, ms).unref();
  let remaining = open.length;
  for (const socket of open) socket.once('close', () => { if (--remaining === 0) clearTimeout(timer); });
}

export class RefusedConnections {
  private readonly sockets = new Set<Socket>();

  /** Writes `last` and closes the connection on this side. */
  refuse(socket: Socket, last: string | Buffer): void {
    if (socket.destroyed) return;
    this.sockets.add(socket);
    destroyAfter([socket]);
    socket.on('error', () => {});
    socket.on('close', () => this.sockets.delete(socket));
    socket.resume();
    socket.end(last, () => socket.destroy());
  }

  /** Destroys the refused connections whose words are still being written (a server stopping). */
  destroyAll(): void {
    for (const socket of this.sockets) socket.destroy();
  }
}
