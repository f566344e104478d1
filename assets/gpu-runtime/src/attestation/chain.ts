/**
 * Certificate path validation for attestation documents (RFC 5280 reduced to the Nitro
 * profile): pinned root, then each certificate issued and signed by the one before it, valid
 * at the given time, with CA and key-usage constraints. No revocation: AWS publishes none
 * for these chains, and the leaf lives for hours.
 */
import { X509Certificate } from 'node:crypto';
import { KeyUsageFlags } from '@peculiar/asn1-x509';
import { AttestationError } from './attestation-error';
import { ChainCertificate, ECDSA_WITH_SHA384, readCertificate } from './certificate';

/**
 * Verifies `root = cabundle[0] -> ... -> cabundle[n-1] -> leaf` at `at` and returns the
 * leaf, whose key may then be trusted to have signed the document.
 */
export function verifyChain(root: X509Certificate, cabundle: readonly Buffer[], leaf: Buffer, at: Date): X509Certificate {
  // Compared before anything is parsed: nothing from an unpinned chain is looked at.
  if (!cabundle[0].equals(root.raw)) {
    throw new AttestationError('ROOT_MISMATCH', `cabundle[0] is not the pinned root (${commonName(root)})`);
  }
  const chain = [
    ...cabundle.map((der, i) => readCertificate(der, `cabundle[${i}]`)),
    readCertificate(leaf, 'certificate'),
  ];
  const last = chain.length - 1;
  chain.forEach((cert, i) => {
    if (i > 0) checkIssuedBy(cert, chain[i - 1]);
    checkValidity(cert, at);
    checkCriticalExtensions(cert);
    if (i < last) {
      checkCa(cert, last - 1 - i);
    } else {
      checkLeaf(cert);
    }
  });
  return chain[last].x509;
}

function checkIssuedBy(cert: ChainCertificate, issuer: ChainCertificate): void {
  const algorithm = cert.signatureAlgorithms.find((a) => a !== ECDSA_WITH_SHA384);
  if (algorithm) {
    throw chainError(`${describe(cert)} is signed with algorithm ${algorithm}, not ecdsa-with-SHA384`);
  }
  // checkIssued matches the issuer name (and key identifiers where present); verify checks
  // the signature over the exact to-be-signed bytes received.
  if (!cert.x509.checkIssued(issuer.x509)) {
    throw chainError(`${describe(cert)} was not issued by ${describe(issuer)}`);
  }
  if (!cert.x509.verify(issuer.publicKey)) {
    throw chainError(`${describe(cert)} is not signed by ${describe(issuer)}`);
  }
}

/** RFC 5280: valid from notBefore to notAfter, both inclusive. */
function checkValidity(cert: ChainCertificate, at: Date): void {
  if (at < cert.notBefore) {
    throw new AttestationError('NOT_YET_VALID', `${describe(cert)} is not valid before ${cert.notBefore.toISOString()} (checked at ${at.toISOString()})`);
  }
  if (at > cert.notAfter) {
    throw new AttestationError('EXPIRED', `${describe(cert)} expired at ${cert.notAfter.toISOString()} (checked at ${at.toISOString()})`);
  }
}

/** A critical extension that is not understood must make the certificate unusable (RFC 5280 4.2). */
function checkCriticalExtensions(cert: ChainCertificate): void {
  if (cert.unknownCritical.length > 0) {
    throw constraintsError(`${describe(cert)} has critical extension ${cert.unknownCritical.join(', ')}, which this verifier does not process`);
  }
}

/**
 * `below` counts the CA certificates between this one and the leaf. Self-issued ones are
 * counted too (RFC 5280 would skip them): stricter, and Nitro chains have none.
 */
function checkCa(cert: ChainCertificate, below: number): void {
  if (cert.basicConstraints?.cA !== true) {
    throw constraintsError(`${describe(cert)} issues certificates but is not a CA (BasicConstraints cA is not true)`);
  }
  if (!hasKeyUsage(cert, KeyUsageFlags.keyCertSign)) {
    throw constraintsError(`${describe(cert)} issues certificates but its KeyUsage lacks keyCertSign`);
  }
  const limit = cert.basicConstraints.pathLenConstraint;
  if (limit !== undefined && below > limit) {
    throw constraintsError(`${describe(cert)} allows ${limit} CA certificates below it, the chain has ${below}`);
  }
}

function checkLeaf(cert: ChainCertificate): void {
  if (cert.basicConstraints?.cA === true) {
    throw constraintsError(`${describe(cert)} signs the document but is a CA (BasicConstraints cA is true)`);
  }
  if (!hasKeyUsage(cert, KeyUsageFlags.digitalSignature)) {
    throw constraintsError(`${describe(cert)} signs the document but its KeyUsage lacks digitalSignature`);
  }
  const key = cert.publicKey;
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'secp384r1') {
    throw constraintsError(`${describe(cert)} key is not ECDSA P-384, which ES384 requires`);
  }
}

/** KeyUsage is required here: an absent extension (which RFC 5280 reads as "any") is refused. */
function hasKeyUsage(cert: ChainCertificate, flag: KeyUsageFlags): boolean {
  return cert.keyUsage !== undefined && (cert.keyUsage & flag) !== 0;
}

function describe(cert: ChainCertificate): string {
  return `${cert.label} (${commonName(cert.x509)})`;
}

function commonName(x509: X509Certificate): string {
  return x509.subject.split('\n').find((line) => line.startsWith('CN='))?.slice(3) ?? x509.subject.replace(/\n/g, ', ');
}

function chainError(reason: string): AttestationError {
  return new AttestationError('CHAIN', reason);
}

function constraintsError(reason: string): AttestationError {
  return new AttestationError('CONSTRAINTS', reason);
}
