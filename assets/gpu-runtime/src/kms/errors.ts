import { RuntimeError } from '../errors';

/**
 * `CiphertextForRecipient` could not be unwrapped.
 * - `CMS_MALFORMED`: not well-formed BER, or a required field missing or of the wrong size;
 * - `CMS_UNSUPPORTED`: well-formed, but outside the profile KMS uses (content type, version,
 *   recipient kind or count, key or content algorithm and parameters);
 * - `CMS_DECRYPT`: the key could not be decrypted with the given private key, or the content
 *   with that key (one reason for both: a caller cannot tell which).
 */
export class CmsError extends RuntimeError {
  constructor(code: 'CMS_MALFORMED' | 'CMS_UNSUPPORTED' | 'CMS_DECRYPT', reason: string) {
    super(code, reason);
  }
}

/**
 * A KMS call failed, or KMS answered something this runtime will not use.
 * - `KMS_CALL`: the request failed (the SDK's error name and message are in the reason);
 * - `KMS_PLAINTEXT_RETURNED`: a Recipient request came back with plaintext, so the key left
 *   KMS outside the enclave's envelope;
 * - `KMS_NO_RECIPIENT_CIPHERTEXT`: a Recipient request came back without `CiphertextForRecipient`;
 * - `KMS_RESPONSE`: another required field is missing or out of its limits;
 * - `KMS_REQUEST`: a request field is out of KMS's limits (checked before sending);
 * - `KMS_RECIPIENT`: the recipient (attestation document or private key) is unusable.
 */
export class KmsError extends RuntimeError {
  constructor(
    code: 'KMS_CALL' | 'KMS_PLAINTEXT_RETURNED' | 'KMS_NO_RECIPIENT_CIPHERTEXT' | 'KMS_RESPONSE' | 'KMS_REQUEST' | 'KMS_RECIPIENT',
    reason: string,
  ) {
    super(code, reason);
  }
}
