/**
 * vsock addresses through transport.ts: parsing and validation, the clean VSOCK_UNAVAILABLE
 * refusals, errno mapping, and the whole path (listen, connect, the record protocol) with
 * the real addon's bridge and accept loop under a TCP stand-in for vsock. No test here
 * reaches AF_VSOCK (vsock-helpers.ts says why).
 */
import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { ENCLAVE_TO_HOST } from '../../src/abe/frame-header';
import { sealBuffer } from '../../src/abe/frame';
import { ControlMessage } from '../../src/protocol/control';
import { RecordConnection } from '../../src/protocol/record-connection';
import { Address, TransportError, TransportOptions, connect, formatAddress, listen, parseAddress } from '../../src/protocol/transport';
import { AcceptError, ConnectionCallback, VSOCK_ANY, VsockAddon, VsockServer } from '../../src/protocol/vsock';
import { WireError } from '../../src/protocol/wire-error';
import { sealerAndOpener, testOperation } from '../abe/helpers';
import { asyncRefusal, refusal } from '../refusal';
import { NO_ADDON, addon, eventually, removeScratch, tcpBackedAddon } from './vsock-helpers';

const transportRefusal = (action: () => Promise<unknown>) => asyncRefusal(action, TransportError);

const errno = (code: string, message: string) => Object.assign(new Error(message), { code });

/** An addon whose every function fails the test: for paths that must not reach it. */
const untouchable: VsockAddon = new Proxy({} as VsockAddon, {
  get: (_target, name) => () => { throw new Error(`the addon's ${String(name)} was called`); },
});

describe('vsock addresses', () => {
  it.each([
    ['vsock:3:7410', { kind: 'vsock', cid: 3, port: 7410 }],
    ['vsock:any:7410', { kind: 'vsock', cid: VSOCK_ANY, port: 7410 }],
    ['vsock:4294967295:4294967295', { kind: 'vsock', cid: VSOCK_ANY, port: VSOCK_ANY }],
    ['vsock:0:0', { kind: 'vsock', cid: 0, port: 0 }],
  ])('parses %s', (text, address) => {
    expect(parseAddress(text)).toEqual(address);
  });

  it('formats any as any, so addresses round-trip', () => {
    expect(formatAddress(parseAddress('vsock:4294967295:5000'))).toBe('vsock:any:5000');
    expect(formatAddress(parseAddress('vsock:3:5000'))).toBe('vsock:3:5000');
  });

  it.each([
    ['vsock:4294967296:7410', /the vsock CID must be at most 4294967295 \(or any\)/],
    ['vsock:3:4294967296', /the vsock port must be at most 4294967295/],
    ['vsock:-1:7410', /is not an address/],
    ['vsock:3', /is not an address/],
    ['vsock:host:7410', /is not an address/],
    ['vsock:3:7410:1', /is not an address/],
  ])('refuses %s', (text, message) => {
    const error = refusal(() => parseAddress(text));
    expect(error.code).toBe('ADDRESS');
    expect(error.message).toMatch(message);
  });

  it('refuses to connect to any CID or any port, before looking for the addon', async () => {
    const options: TransportOptions = { vsock: () => untouchable };
    const anyCid = await transportRefusal(() => connect(parseAddress('vsock:any:7410'), options));
    expect(anyCid.code).toBe('ADDRESS');
    expect(anyCid.message).toContain("'any' is a CID to listen on, not to connect to");
    const anyPort = await transportRefusal(() => connect({ kind: 'vsock', cid: 3, port: VSOCK_ANY }, options));
    expect(anyPort.code).toBe('ADDRESS');
  });
});

describe('vsock unavailable', () => {
  const address: Address = { kind: 'vsock', cid: 3, port: 7410 };

  it('is refused without the addon, naming the address, the reason and the fix', async () => {
    const error = await transportRefusal(() => connect(address, { vsock: () => undefined }));
    expect(error.code).toBe('VSOCK_UNAVAILABLE');
    expect(error.message).toContain('vsock:3:7410');
    expect(error.message).toContain('no vsock addon (dist/vsock.node)');
    expect(error.message).toContain('npm run build:runtime');
    const listening = await transportRefusal(() => listen({ kind: 'vsock', cid: VSOCK_ANY, port: 7410 }, () => undefined, { vsock: () => undefined }));
    expect(listening.code).toBe('VSOCK_UNAVAILABLE');
    expect(listening.message).toContain('vsock:any:7410');
  });

  it('is refused when the addon exists but does not load', async () => {
    const error = await transportRefusal(() => connect(address, { vsock: () => { throw new Error('invalid ELF header'); } }));
    expect(error.code).toBe('VSOCK_UNAVAILABLE');
    expect(error.message).toMatch(/dist\/vsock\.node does not load \(invalid ELF header\); rebuild it/);
  });

  it('is switched off by EGPU_VSOCK=off (set for every test): the default addon is never used here', async () => {
    expect(process.env.EGPU_VSOCK).toBe('off');
    const error = await transportRefusal(() => connect(address));
    expect(error.code).toBe('VSOCK_UNAVAILABLE');
    expect(error.message).toContain('vsock:3:7410: AF_VSOCK is not available: vsock is switched off by EGPU_VSOCK=off');
    const listening = await transportRefusal(() => listen(address, () => undefined));
    expect(listening.code).toBe('VSOCK_UNAVAILABLE');
  });

  it.each(['EAFNOSUPPORT', 'ENODEV', 'EPROTONOSUPPORT', 'ESOCKTNOSUPPORT'])('maps %s from the kernel to VSOCK_UNAVAILABLE', async (code) => {
    const failing: VsockAddon = {
      ...untouchable,
      connect: () => Promise.reject(errno(code, 'socket: Address family not supported by protocol')),
      listen: () => { throw errno(code, 'socket: Address family not supported by protocol'); },
    };
    const error = await transportRefusal(() => connect(address, { vsock: () => failing }));
    expect(error.code).toBe('VSOCK_UNAVAILABLE');
    expect(error.message).toContain('vsock:3:7410: AF_VSOCK is not available on this machine (socket: Address family not supported by protocol)');
    expect(error.message).toContain('run inside a Nitro enclave or on its parent instance');
    const listening = await transportRefusal(() => listen(address, () => undefined, { vsock: () => failing }));
    expect(listening.code).toBe('VSOCK_UNAVAILABLE');
  });

  it('maps other failures to CONNECT and LISTEN, like tcp and unix', async () => {
    const failing: VsockAddon = {
      ...untouchable,
      connect: () => Promise.reject(errno('ECONNREFUSED', 'connect: Connection refused')),
      listen: () => { throw errno('EADDRINUSE', 'bind: Address already in use'); },
    };
    const error = await transportRefusal(() => connect(address, { vsock: () => failing }));
    expect(error.code).toBe('CONNECT');
    expect(error.message).toBe('CONNECT: cannot connect to vsock:3:7410: connect: Connection refused');
    const listening = await transportRefusal(() => listen(address, () => undefined, { vsock: () => failing }));
    expect(listening.code).toBe('LISTEN');
    expect(listening.message).toBe('LISTEN: cannot listen on vsock:3:7410: bind: Address already in use');
  });
});

describe('VsockServer and accept failures (a stand-in native listener)', () => {
  /** A server over a listener whose deliveries the test makes; `closes` counts native close() calls. */
  function standIn(): { server: VsockServer; deliver: ConnectionCallback; closes: () => number } {
    let deliver!: ConnectionCallback;
    let closes = 0;
    const server = new VsockServer(() => undefined).start((callback) => {
      deliver = callback;
      return { close: () => { closes++; }, address: () => ({ cid: 3, port: 7410 }), ref: () => undefined, unref: () => undefined };
    });
    return { server, deliver, closes: () => closes };
  }
  const acceptError = (code: string, fatal: boolean): AcceptError => Object.assign(new Error(`accept: ${code}`), { code, syscall: 'accept', fatal });

  it('goes on listening after an accept that failed and was retried, and emits it only to a listener', () => {
    const { server, deliver, closes } = standIn();
    expect(() => deliver(acceptError('EMFILE', false))).not.toThrow(); // nobody listens: dropped, as net.Server does
    const seen: Error[] = [];
    server.on('error', (error) => seen.push(error));
    deliver(acceptError('ENOBUFS', false));
    expect(seen).toMatchObject([{ code: 'ENOBUFS' }]);
    expect(server.listening).toBe(true);
    expect(closes()).toBe(0);
    server.close();
  });

  it('stops when the accept loop has stopped: listening turns false, the listener is closed, error and close are emitted', async () => {
    const { server, deliver, closes } = standIn();
    const seen: Error[] = [];
    server.on('error', (error) => seen.push(error));
    const closed = new Promise<void>((resolve) => server.once('close', resolve));
    deliver(acceptError('EBADF', true));
    expect(seen).toMatchObject([{ code: 'EBADF', fatal: true }]);
    expect(server.listening).toBe(false);
    expect(server.address()).toBeNull();
    expect(closes()).toBe(1);
    await closed;
  });

  it('makes a stopped accept loop an unhandled error when nobody listens for it, rather than a listener that accepts nothing', () => {
    const { server, deliver } = standIn();
    expect(() => deliver(acceptError('EBADF', true))).toThrow('accept: EBADF');
    expect(server.listening).toBe(false);
  });
});

describe.skipIf(addon === undefined)(`vsock through transport, the real bridge under a TCP stand-in (skipped if ${NO_ADDON})`, () => {
  afterAll(removeScratch);

  it('listens and connects through the addon, and the record protocol runs over it', async () => {
    const { addon: fake, calls } = tcpBackedAddon(addon!);
    const options: TransportOptions = { vsock: () => fake };
    const operation = testOperation({ dir: ENCLAVE_TO_HOST });
    const payload = randomBytes(3 * 1024 * 1024 + 5);
    const received: ControlMessage[] = [];
    const frames: Buffer[] = [];
    let resolveServerClosed!: (error?: WireError) => void;
    const serverClosed = new Promise<WireError | undefined>((resolve) => { resolveServerClosed = resolve; });
    const server = await listen(parseAddress('vsock:any:7410'), (socket) => {
      const serverSide: RecordConnection = new RecordConnection(socket, {
        onFrame: (frame) => frames.push(Buffer.from(frame)),
        onControl: (message) => {
          received.push(message);
          if (message.t === 'open') void serverSide.sendControl({ t: 'hello', hello: Buffer.from('the context hello') });
        },
        onClose: resolveServerClosed,
      });
    }, options);
    expect(server).toBeInstanceOf(VsockServer);
    expect(server).toBeInstanceOf(net.Server);
    expect(calls).toEqual(['listen 4294967295:7410 backlog 128']);

    const socket = await connect(parseAddress('vsock:3:7410'), options);
    expect(calls[1]).toBe('connect 3:7410');
    const controls: ControlMessage[] = [];
    const clientClosed = new Promise<WireError | undefined>((resolveClosed) => {
      const client = new RecordConnection(socket, {
        onFrame: () => undefined,
        onControl: (message) => {
          controls.push(message);
          if (message.t !== 'hello') return;
          // The answer to the hello: 3 MiB of sealed frames (the largest records there are), then the end.
          const { sealer } = sealerAndOpener(operation);
          for (const frame of sealBuffer(sealer, 7, payload, true)) void client.send(frame);
          client.close();
        },
        onClose: resolveClosed,
      });
      void client.sendControl({ t: 'open' });
    });

    expect(await clientClosed).toBeUndefined();
    expect(await serverClosed).toBeUndefined();
    expect(controls).toEqual([{ t: 'hello', hello: Buffer.from('the context hello') }]);
    expect(received).toEqual([{ t: 'open' }]);
    // Every frame arrived whole and opens: the bridge changed no byte and lost no boundary.
    const { opener } = sealerAndOpener(operation);
    const opened = Buffer.concat(frames.map((frame) => Buffer.from(opener.open(frame).plaintext)));
    expect(frames).toHaveLength(4);
    expect(opened.equals(payload)).toBe(true);

    await new Promise<void>((resolve) => server.close(() => resolve()));
    expect(server.listening).toBe(false);
    await eventually(() => addon!.activeBridges() === 0, 'the bridges to end');
  });
});
