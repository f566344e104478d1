/**
 * The plain processes the benchmarks measure the offload against: an echo server and a
 * relay, a few lines of Node each, doing nothing but moving bytes over Unix sockets. They
 * run from source text (`node -e`), so nothing of the runtime is loaded in them.
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as net from 'node:net';

/** Writes back what it reads. Argument: the socket path to listen on. */
export const ECHO_SOURCE = `
const net = require('node:net');
const server = net.createServer((s) => s.on('data', (d) => s.write(d)));
server.listen(process.argv[1], () => process.stdout.write('ready\\n'));
process.on('SIGTERM', () => process.exit(0));
`;

/**
 * SGS's place: forwards each chunk as it comes, both ways, looking at nothing. Arguments:
 * the socket path to listen on, the socket path to forward to.
 */
export const RELAY_SOURCE = `
const net = require('node:net');
const [listenPath, targetPath] = process.argv.slice(1);
const server = net.createServer((client) => {
  const target = net.createConnection(targetPath);
  client.on('data', (d) => target.write(d));
  target.on('data', (d) => client.write(d));
});
server.listen(listenPath, () => process.stdout.write('ready\\n'));
process.on('SIGTERM', () => process.exit(0));
`;

const START_TIMEOUT_MS = 60_000;

/** Starts `node ...args` (or `command ...args`) and resolves once it prints its first line (it is listening then). */
export function startProcess(args: string[], command = process.execPath): Promise<ChildProcess> {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const what = args.join(' ').replace(/\s+/g, ' ').slice(0, 200);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${what} did not start within ${START_TIMEOUT_MS} ms`));
    }, START_TIMEOUT_MS);
    child.stdout!.once('data', () => {
      clearTimeout(timer);
      resolve(child);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited (${code}) before it was ready`));
    });
  });
}

export function connectUnix(path: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection(path, () => resolve(socket));
    socket.once('error', reject);
  });
}
