/**
 * Reads a DER certificate once into what chain verification needs: node:crypto's view for
 * signature and issuer checks, and the extensions node:crypto does not expose
 * (BasicConstraints with its path length, KeyUsage bits, criticality).
 */
import { KeyObject, X509Certificate } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import {
  BasicConstraints,
  Certificate,
  id_ce_basicConstraints,
  id_ce_keyUsage,
  KeyUsage,
} from '@peculiar/asn1-x509';
import { AttestationError } from './attestation-error';

/** ecdsa-with-SHA384: the only signature algorithm in Nitro chains. */
export const ECDSA_WITH_SHA384 = '1.2.840.10045.4.3.3';

export interface ChainCertificate {
  /** Where it came from, for reason lines: `cabundle[2]`, `certificate`. */
  readonly label: string;
  readonly x509: X509Certificate;
  readonly publicKey: KeyObject;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** Both copies of the signature algorithm (the signed one and the outer one). */
  readonly signatureAlgorithms: readonly [string, string];
  readonly basicConstraints?: BasicConstraints;
  /** KeyUsage bits (KeyUsageFlags), absent when the extension is. */
  readonly keyUsage?: number;
  /** OIDs of critical extensions this verifier does not interpret. */
  readonly unknownCritical: readonly string[];
}

/** The extensions the chain checks interpret; any other marked critical is refused. */
const UNDERSTOOD = new Set([id_ce_basicConstraints, id_ce_keyUsage]);

export function readCertificate(der: Buffer, label: string): ChainCertificate {
  let x509: X509Certificate;
  let publicKey: KeyObject;
  let asn: Certificate;
  try {
    x509 = new X509Certificate(der);
    publicKey = x509.publicKey;
    asn = AsnConvert.parse(der, Certificate);
  } catch (error) {
    throw new AttestationError('MALFORMED', `${label} is not an X.509 certificate: ${(error as Error).message}`);
  }
  // Both parsers tolerate trailing bytes; the re-encoding shows them (and any non-DER form).
  if (!x509.raw.equals(der)) {
    throw new AttestationError('MALFORMED', `${label} is not exactly one DER certificate`);
  }
  const tbs = asn.tbsCertificate;
  const extensions = tbs.extensions ?? [];
  const ids = extensions.map((e) => e.extnID);
  if (new Set(ids).size !== ids.length) {
    throw new AttestationError('MALFORMED', `${label} repeats an extension`);
  }
  const extension = (id: string) => extensions.find((e) => e.extnID === id)?.extnValue;
  const basicConstraints = extension(id_ce_basicConstraints);
  const keyUsage = extension(id_ce_keyUsage);
  try {
    return {
      label,
      x509,
      publicKey,
      notBefore: tbs.validity.notBefore.getTime(),
      notAfter: tbs.validity.notAfter.getTime(),
      signatureAlgorithms: [tbs.signature.algorithm, asn.signatureAlgorithm.algorithm],
      basicConstraints: basicConstraints && AsnConvert.parse(basicConstraints, BasicConstraints),
      keyUsage: keyUsage && AsnConvert.parse(keyUsage, KeyUsage).toNumber(),
      unknownCritical: extensions.filter((e) => e.critical && !UNDERSTOOD.has(e.extnID)).map((e) => e.extnID),
    };
  } catch (error) {
    throw new AttestationError('MALFORMED', `${label} has an unreadable extension: ${(error as Error).message}`);
  }
}
