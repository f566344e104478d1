import { RuntimeError } from '../errors';

/**
 * A sealed artefact was refused, or could not be sealed.
 * - `ARTEFACT_HEADER`: not an artefact (magic), or a header field malformed or out of its limits;
 * - `ARTEFACT_VERSION`: a format version this runtime does not read;
 * - `ARTEFACT_TRUNCATED`: the input ends inside the header, inside a tag, or before the final chunk;
 * - `ARTEFACT_AUTH`: a chunk failed authentication: changed, moved, from another artefact,
 *   the header changed, or the data key is not this artefact's;
 * - `ARTEFACT_DATA_KEY`: the data key given to open it is not 256 bits;
 * - `ARTEFACT_TOO_LARGE`: more chunks than the format allows;
 * - `ARTEFACT_MISMATCH`: an authentic artefact, but not the one expected (another encryption
 *   context or KMS key: another model, or another version of it, sealed under the same key).
 */
export class ArtefactError extends RuntimeError {
  constructor(
    code: 'ARTEFACT_HEADER' | 'ARTEFACT_VERSION' | 'ARTEFACT_TRUNCATED' | 'ARTEFACT_AUTH' | 'ARTEFACT_DATA_KEY' | 'ARTEFACT_TOO_LARGE' | 'ARTEFACT_MISMATCH',
    reason: string,
  ) {
    super(code, reason);
  }
}
