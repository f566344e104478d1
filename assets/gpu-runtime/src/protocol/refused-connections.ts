/**
 * Connections a server turns away (at its connection or session limit): each gets its last
 * words, what it sends meanwhile is read and dropped, and its socket is destroyed once the
 * words are written, or after REFUSAL_LINGER_MS when they cannot be (a peer that does not
 * read). So a refused connection holds no descriptor for long, and destroyAll() lets the
 * server's close() complete without waiting for peers that keep their side open.
 */
import type { Socket } from 'node:net';

/** The longest a refused connection is kept for its last words to be written. */
export const REFUSAL_LINGER_MS = 1_000;

export class RefusedConnections {
  private readonly sockets = new Set<Socket>();

  /** Writes `last` and closes the connection on this side. */
  refuse(socket: Socket, last: string | Buffer): void {
    if (socket.destroyed) return;
    this.sockets.add(socket);
    const timer = setTimeout(() => socket.destroy(), REFUSAL_LINGER_MS).unref();
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      this.sockets.delete(socket);
    });
    socket.resume();
    socket.end(last, () => socket.destroy());
  }

  /** Destroys the refused connections whose words are still being written (a server stopping). */
  destroyAll(): void {
    for (const socket of this.sockets) socket.destroy();
  }
}
