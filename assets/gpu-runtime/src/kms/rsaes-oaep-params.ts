import { AsnProp } from '@peculiar/asn1-schema';
import { AlgorithmIdentifier } from '@peculiar/asn1-x509';

/** Object identifiers of the algorithms in the profile KMS uses for `CiphertextForRecipient`. */
export const OID = {
  /** RFC 8017 appendix A.2.1. */
  rsaesOaep: '1.2.840.113549.1.1.7',
  mgf1: '1.2.840.113549.1.1.8',
  pSpecified: '1.2.840.113549.1.1.9',
  /** RFC 5754 section 2.2. */
  sha256: '2.16.840.1.101.3.4.2.1',
  /** RFC 3565 section 4.1. */
  aes256Cbc: '2.16.840.1.101.3.4.1.42',
} as const;

/**
 * RSAES-OAEP-params (RFC 4055 section 4.1):
 *
 *     RSAES-OAEP-params ::= SEQUENCE {
 *       hashAlgorithm      [0] EXPLICIT AlgorithmIdentifier DEFAULT sha1Identifier,
 *       maskGenAlgorithm   [1] EXPLICIT AlgorithmIdentifier DEFAULT mgf1SHA1Identifier,
 *       pSourceAlgorithm   [2] EXPLICIT AlgorithmIdentifier DEFAULT pSpecifiedEmptyIdentifier }
 *
 * No @peculiar package for PKCS #1 is installed, so the schema is declared here. An absent
 * field means its DEFAULT; it is left undefined rather than filled in, so a reader can tell
 * "SHA-1 by default" from an explicit identifier. The decorators are applied as plain calls
 * because the runtime is compiled (esbuild, tsx, vitest) without `experimentalDecorators`.
 */
export class RsaesOaepParams {
  public hashAlgorithm?: AlgorithmIdentifier;
  public maskGenAlgorithm?: AlgorithmIdentifier;
  public pSourceAlgorithm?: AlgorithmIdentifier;

  constructor(params: Partial<RsaesOaepParams> = {}) {
    Object.assign(this, params);
  }
}

AsnProp({ type: AlgorithmIdentifier, context: 0, optional: true })(RsaesOaepParams.prototype, 'hashAlgorithm');
AsnProp({ type: AlgorithmIdentifier, context: 1, optional: true })(RsaesOaepParams.prototype, 'maskGenAlgorithm');
AsnProp({ type: AlgorithmIdentifier, context: 2, optional: true })(RsaesOaepParams.prototype, 'pSourceAlgorithm');
