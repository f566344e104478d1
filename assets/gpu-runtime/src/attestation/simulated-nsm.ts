/**
 * A simulated Nitro Secure Module for local mode: it signs attestation documents in exactly
 * the AWS format (untagged ES384 COSE_Sign1, same payload fields and order, same chain
 * shape) under a locally generated P-384 root, so the one verifier checks both. Its root is
 * not the AWS root, so its documents are never accepted where the AWS root is pinned.
 */
import { generateKeyPairSync, KeyObject, randomBytes, X509Certificate } from 'node:crypto';
import { KeyUsageFlags } from '@peculiar/asn1-x509';
import { issueCertificate } from './certificate-builder';
import { signCoseSign1 } from './cose';
import { DIGEST, encodeAttestationPayload, LIMITS, parseAttestationDocument } from './document';
import { Authority, loadState, saveState, SimulatedNsmState } from './simulated-nsm-state';

export interface AttestRequest {
  /** PCR index to value (48 bytes, or their hex); PCR0-15 not given are 48 zero bytes. */
  readonly pcrs?: Readonly<Record<number, Buffer | string>>;
  readonly publicKey?: Buffer;
  readonly userData?: Buffer;
  readonly nonce?: Buffer;
  /** When the document is made; default now. */
  readonly timestamp?: Date;
}

/** The NSM always reports PCR0-15; unused ones are zero (as in debug mode). */
const DEFAULT_PCR_COUNT = 16;

const ROOT_LIFETIME_MS = 10 * 365 * 24 * 3600_000;
const INTERMEDIATE_LIFETIME_MS = 5 * 365 * 24 * 3600_000;
/** As AWS: an enclave's signing certificate lives three hours. */
const LEAF_LIFETIME_MS = 3 * 3600_000;
/** Certificates start a minute early, so a verifier whose clock lags a little still accepts. */
const BACKDATE_MS = 60_000;

interface Leaf extends Authority {
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export class SimulatedNsm {
  /** Generates a new root and intermediate (P-384), and a leaf for this enclave. */
  static create(options: { now?: Date } = {}): SimulatedNsm {
    const now = options.now ?? new Date();
    const root = newAuthority('egpu simulated Nitro root', now, ROOT_LIFETIME_MS, 1);
    const intermediate = newAuthority('egpu simulated Nitro intermediate', now, INTERMEDIATE_LIFETIME_MS, 0, root);
    return new SimulatedNsm({ root, intermediate }, now);
  }

  /** Loads the root and intermediate saved in `dir`; the enclave (module id, leaf) is new. */
  static load(dir: string, options: { now?: Date } = {}): SimulatedNsm {
    return new SimulatedNsm(loadState(dir), options.now ?? new Date());
  }

  /** This enclave's module id, shaped like AWS's: `i-<17 hex>-enc<16 hex>`. */
  readonly moduleId = `i-${randomBytes(9).toString('hex').slice(0, 17)}-enc${randomBytes(8).toString('hex')}`;
  private leaf: Leaf;

  private constructor(private readonly state: SimulatedNsmState, now: Date) {
    this.leaf = this.issueLeaf(now);
  }

  /** The root to pin when verifying this NSM's documents. */
  get rootPem(): string {
    return this.state.root.certificate.toString();
  }

  get rootCertificate(): X509Certificate {
    return this.state.root.certificate;
  }

  /** Writes the root and intermediate (and their keys, mode 0600) to `dir`. */
  save(dir: string): void {
    saveState(dir, this.state);
  }

  /** Signs an attestation document: untagged COSE_Sign1, as the NSM's Attestation request returns. */
  attest(request: AttestRequest = {}): Buffer {
    const time = request.timestamp ?? new Date();
    // Like AWS, sign only with a certificate valid when the document is made.
    if (time < this.leaf.notBefore || time > this.leaf.notAfter) {
      this.leaf = this.issueLeaf(time);
    }
    const payload = encodeAttestationPayload({
      moduleId: this.moduleId,
      digest: DIGEST,
      timestamp: time.getTime(),
      pcrs: pcrValues(request.pcrs ?? {}),
      certificate: this.leaf.certificate.raw,
      cabundle: [this.state.root.certificate.raw, this.state.intermediate.certificate.raw],
      publicKey: request.publicKey,
      userData: request.userData,
      nonce: request.nonce,
    });
    const document = signCoseSign1(payload, this.leaf.privateKey);
    // The verifier's own limits, applied before anything leaves: never emit what AWS would not.
    parseAttestationDocument(document);
    return document;
  }

  private issueLeaf(time: Date): Leaf {
    const { publicKey, privateKey } = newKeyPair();
    const notBefore = toSeconds(time.getTime() - BACKDATE_MS);
    const notAfter = toSeconds(time.getTime() + LEAF_LIFETIME_MS);
    const certificate = issueCertificate({
      commonName: `${this.moduleId}.simulated`,
      publicKey,
      signer: this.state.intermediate,
      notBefore,
      notAfter,
      keyUsage: KeyUsageFlags.digitalSignature,
    });
    return { certificate, privateKey, notBefore, notAfter };
  }
}

function newAuthority(commonName: string, now: Date, lifetimeMs: number, pathLength: number, issuer?: Authority): Authority {
  const { publicKey, privateKey } = newKeyPair();
  const certificate = issueCertificate({
    commonName,
    publicKey,
    signer: issuer ?? { privateKey },
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter: new Date(now.getTime() + lifetimeMs),
    ca: { pathLength },
    keyUsage: KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign,
  });
  return { certificate, privateKey };
}

/** X.509 times have whole seconds; rounding down here keeps the leaf's recorded validity exact. */
function toSeconds(ms: number): Date {
  return new Date(Math.floor(ms / 1000) * 1000);
}

function newKeyPair(): { publicKey: KeyObject; privateKey: KeyObject } {
  return generateKeyPairSync('ec', { namedCurve: 'P-384' });
}

function pcrValues(given: Readonly<Record<number, Buffer | string>>): Map<number, Buffer> {
  const pcrs = new Map<number, Buffer>();
  for (let i = 0; i < DEFAULT_PCR_COUNT; i++) pcrs.set(i, Buffer.alloc(LIMITS.pcrBytes));
  for (const [index, value] of Object.entries(given)) {
    if (typeof value === 'string' && !/^([0-9a-f]{2})*$/i.test(value)) {
      throw new TypeError(`SimulatedNsm.attest: PCR${index} is not hex`);
    }
    pcrs.set(Number(index), typeof value === 'string' ? Buffer.from(value, 'hex') : value);
  }
  return pcrs;
}
