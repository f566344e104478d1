/**
 * One SGS with its fake context in a fresh workspace, and ready sessions on it: what most SGS
 * tests start from. stop() releases everything, whatever state the test left it in.
 */
import { SimulatedNsm } from '../../src/attestation/simulated-nsm';
import { SgsServer, SgsServerOptions } from '../../src/sgs/server';
import { FakeContext } from './fake-context';
import { FakeEgp } from './fake-egp';
import { IMAGE_PCRS, Workspace } from './fixtures';

export class Harness {
  static async start(nsm: SimulatedNsm, overrides: Record<string, unknown> = {}, options: SgsServerOptions = {}): Promise<Harness> {
    const workspace = new Workspace(nsm);
    const context = await FakeContext.start(workspace.contextSocket, nsm.rootCertificate);
    const sgs = await workspace.startSgs(overrides, options);
    return new Harness(nsm, workspace, context, sgs);
  }

  private readonly egps: FakeEgp[] = [];

  private constructor(readonly nsm: SimulatedNsm, readonly workspace: Workspace, readonly context: FakeContext, readonly sgs: SgsServer) {}

  /** A new EGP connection with its session set up (ready). */
  async session(): Promise<FakeEgp> {
    const egp = await FakeEgp.connect(this.workspace.enclaveSocket);
    this.egps.push(egp);
    const outcome = await egp.open({ nsm: this.nsm, pcrs: IMAGE_PCRS });
    if (!outcome.ready) throw new Error(`session refused: ${outcome.error.code}: ${outcome.error.reason}`);
    return egp;
  }

  async stop(): Promise<void> {
    for (const egp of this.egps) egp.close();
    await this.sgs.close();
    await this.context.close();
    this.workspace.remove();
  }
}
