/**
 * SGS when its enclave listener fails: an accept that failed while the listener goes on is
 * logged and nothing else; a listener that stopped (a vsock accept loop that ended, see
 * VsockServer) resolves listenerFailure, on which `egpu sgs` drains and exits 1 for systemd
 * to restart it. The failures are emitted on the real listener here: a listening socket
 * cannot be made to fail on demand.
 */
import type { Server } from 'node:net';
import { describe, expect, it } from 'vitest';
import { SimulatedNsm } from '../../src/attestation/simulated-nsm';
import { FakeContext } from './fake-context';
import { FakeEgp } from './fake-egp';
import { IMAGE_PCRS, Workspace } from './fixtures';

const nsm = SimulatedNsm.create();
const failure = (code: string) => Object.assign(new Error(`accept ${code}`), { code, syscall: 'accept' });

describe('SGS when its enclave listener fails', () => {
  it('logs a failed accept and goes on serving while the listener listens; reports listenerFailure once it has stopped', async () => {
    const workspace = new Workspace(nsm);
    const context = await FakeContext.start(workspace.contextSocket, nsm.rootCertificate);
    const lines: string[] = [];
    const server = await workspace.startSgs({}, { log: (line) => lines.push(line) });
    try {
      const listener = (server as unknown as { enclaveServer: Server }).enclaveServer;
      let reported: Error | undefined;
      void server.listenerFailure.then((error) => { reported = error; });

      listener.emit('error', failure('EMFILE'));
      await new Promise((resolve) => setImmediate(resolve));
      expect(reported).toBeUndefined();
      expect(lines).toContain('sgs: accepting an enclave connection failed (EMFILE); still listening');
      const egp = await FakeEgp.connect(workspace.enclaveSocket);
      expect(await egp.open({ nsm, pcrs: IMAGE_PCRS })).toMatchObject({ ready: true });
      egp.close();

      await new Promise<void>((resolve) => listener.close(() => resolve()));
      listener.emit('error', failure('EBADF'));
      expect(await server.listenerFailure).toMatchObject({ code: 'EBADF' });
      expect(lines).toContain(`sgs: the enclave link ${server.enclaveAddress} stopped accepting: accept EBADF`);
    } finally {
      await server.close();
      await context.close();
      workspace.remove();
    }
  });
});
