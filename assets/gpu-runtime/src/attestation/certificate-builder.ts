/**
 * Issues X.509 v3 certificates for the simulated NSM. node:crypto verifies certificates but
 * cannot issue them, so the structure is built with @peculiar/asn1-x509 and the
 * to-be-signed bytes are signed with node:crypto (ECDSA with SHA-384, as AWS signs).
 */
import { createHash, KeyObject, randomBytes, sign, X509Certificate } from 'node:crypto';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import {
  AlgorithmIdentifier,
  AttributeTypeAndValue,
  AttributeValue,
  AuthorityKeyIdentifier,
  BasicConstraints,
  Certificate,
  Extension,
  Extensions,
  id_ce_authorityKeyIdentifier,
  id_ce_basicConstraints,
  id_ce_keyUsage,
  id_ce_subjectKeyIdentifier,
  KeyIdentifier,
  KeyUsage,
  Name,
  RelativeDistinguishedName,
  SubjectKeyIdentifier,
  SubjectPublicKeyInfo,
  TBSCertificate,
  Validity,
  Version,
} from '@peculiar/asn1-x509';
import { ECDSA_WITH_SHA384 } from './certificate';

const COMMON_NAME = '2.5.4.3';

export interface CertificateRequest {
  readonly commonName: string;
  /** The key the certificate certifies. */
  readonly publicKey: KeyObject;
  /** The issuing CA's certificate and private key; only the key for a self-signed root. */
  readonly signer: { readonly certificate?: X509Certificate; readonly privateKey: KeyObject };
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** Makes a CA (BasicConstraints cA, with an optional path length); absent for an end entity. */
  readonly ca?: { readonly pathLength?: number };
  /** KeyUsageFlags bits, marked critical. */
  readonly keyUsage: number;
  /** Further extensions, after the standard ones. */
  readonly extensions?: readonly Extension[];
}

export function issueCertificate(request: CertificateRequest): X509Certificate {
  const issuer = request.signer.certificate;
  const subject = nameOf(request.commonName);
  const subjectKeyInfo = AsnConvert.parse(request.publicKey.export({ type: 'spki', format: 'der' }), SubjectPublicKeyInfo);
  const issuerKeyInfo = issuer
    ? AsnConvert.parse(issuer.publicKey.export({ type: 'spki', format: 'der' }), SubjectPublicKeyInfo)
    : subjectKeyInfo;
  const algorithm = new AlgorithmIdentifier({ algorithm: ECDSA_WITH_SHA384 });
  const tbs = new TBSCertificate({
    version: Version.v3,
    serialNumber: serialNumber(),
    signature: algorithm,
    // The issuer's subject as its own certificate states it, so the names match.
    issuer: issuer ? AsnConvert.parse(issuer.raw, Certificate).tbsCertificate.subject : subject,
    validity: new Validity({ notBefore: request.notBefore, notAfter: request.notAfter }),
    subject,
    subjectPublicKeyInfo: subjectKeyInfo,
    extensions: new Extensions([
      extension(id_ce_basicConstraints, true, new BasicConstraints({ cA: request.ca !== undefined, pathLenConstraint: request.ca?.pathLength })),
      extension(id_ce_keyUsage, true, new KeyUsage(request.keyUsage)),
      extension(id_ce_subjectKeyIdentifier, false, new SubjectKeyIdentifier(keyIdentifier(subjectKeyInfo))),
      extension(id_ce_authorityKeyIdentifier, false, new AuthorityKeyIdentifier({ keyIdentifier: new KeyIdentifier(keyIdentifier(issuerKeyInfo)) })),
      ...(request.extensions ?? []),
    ]),
  });
  const signature = sign('sha384', Buffer.from(AsnConvert.serialize(tbs)), { key: request.signer.privateKey, dsaEncoding: 'der' });
  const certificate = new Certificate({ tbsCertificate: tbs, signatureAlgorithm: algorithm, signatureValue: toArrayBuffer(signature) });
  return new X509Certificate(Buffer.from(AsnConvert.serialize(certificate)));
}

function extension(id: string, critical: boolean, value: unknown): Extension {
  return new Extension({ extnID: id, critical, extnValue: new OctetString(AsnConvert.serialize(value)) });
}

function nameOf(commonName: string): Name {
  return new Name([new RelativeDistinguishedName([
    new AttributeTypeAndValue({ type: COMMON_NAME, value: new AttributeValue({ utf8String: commonName }) }),
  ])]);
}

/** RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits. */
function keyIdentifier(info: SubjectPublicKeyInfo): Buffer {
  return createHash('sha1').update(Buffer.from(info.subjectPublicKey)).digest();
}

/** 16 random bytes, positive and with a non-zero first byte, so the DER INTEGER is minimal. */
function serialNumber(): ArrayBuffer {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] & 0x7f) | 0x40;
  return toArrayBuffer(bytes);
}

function toArrayBuffer(bytes: Buffer): ArrayBuffer {
  return new Uint8Array(bytes).buffer;
}
