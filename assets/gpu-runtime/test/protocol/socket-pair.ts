/** Two connected sockets over loopback TCP, for tests of what runs on a connection. */
import { createServer, connect, Socket } from 'node:net';

export interface SocketPair {
  /** The side that connected. */
  readonly client: Socket;
  /** The side the server accepted. */
  readonly peer: Socket;
  /** Destroys both sockets and closes the server. */
  close(): Promise<void>;
}

export async function loopbackPair(): Promise<SocketPair> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
  const client = connect((server.address() as { port: number }).port, '127.0.0.1');
  await new Promise((resolve) => client.once('connect', resolve));
  const peer = await accepted;
  return {
    client,
    peer,
    close: async () => {
      client.destroy();
      peer.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
