/**
 * `egpu artefact seal` and `egpu artefact open`: envelope encryption of model artefacts at
 * rest under a KMS key (normally an AttestationBoundKey).
 */
import { KMSClient } from '@aws-sdk/client-kms';
import { unwrapWithKmsRecipient } from '../artefact/kms-data-key';
import { ExpectedArtefact, open } from '../artefact/open';
import { seal } from '../artefact/seal';
import { UsageError } from '../errors';
import { importRecipientPrivateKey, MAX_RECIPIENT_KEY_PEM_BYTES } from '../kms/enclave-keypair';
import { readDocumentFile } from './attest-inputs';
import { openInputFile, readSmallFile, writeFileAtomically } from './artefact-files';
import { Command, requireOption } from './command';
import { progressReporter } from './progress';

/** Sealed artefacts are ciphertext; opened ones are model weights, readable by the owner only. */
const SEALED_FILE_MODE = 0o644;
const OPENED_FILE_MODE = 0o600;

const REGION_USAGE = '  --region R             AWS region of the key (default: the SDK\'s, e.g. AWS_REGION)';

const sealCommand: Command = {
  path: ['artefact', 'seal'],
  summary: 'Encrypt a model artefact for storage under a KMS key\n'
    + 'AES-256-GCM in 1 MiB chunks under a fresh data key, which KMS wraps into the header with\n'
    + 'kms:Encrypt (what an AttestationBoundKey grants publishers). The output appears under --out\n'
    + 'only once complete.',
  usage: [
    '  --key-id ID            the KMS key: id, ARN or alias/NAME',
    '  --in FILE              the artefact to seal',
    '  --out FILE             where to write the sealed artefact',
    '  --context KEY=VALUE    a KMS encryption context pair, kept in the header; repeat for several',
    REGION_USAGE,
  ].join('\n'),
  options: {
    'key-id': { type: 'string' },
    'in': { type: 'string' },
    'out': { type: 'string' },
    'context': { type: 'string', multiple: true },
    'region': { type: 'string' },
  },
  async run(values, io) {
    const keyId = requireOption(values, 'key-id');
    const inPath = requireOption(values, 'in');
    const outPath = requireOption(values, 'out');
    const encryptionContext = parseContext(values.context as string[] | undefined);
    const input = await openInputFile(inPath);
    try {
      const result = await writeFileAtomically(outPath, SEALED_FILE_MODE, (output) => seal(input.stream, output, {
        kms: kmsClient(values.region),
        keyId,
        encryptionContext,
        onProgress: progressReporter(io, 'egpu artefact seal', input.size),
      }));
      io.stdout(`sealed ${inPath} -> ${outPath}: ${result.plaintextBytes} bytes in ${result.chunks} chunks, data key wrapped by ${result.keyId}\n`);
      return 0;
    } finally {
      input.stream.destroy();
    }
  },
};

const openCommand: Command = {
  path: ['artefact', 'open'],
  summary: 'Decrypt a sealed artefact with KMS Decrypt and an attestation document\n'
    + 'KMS returns the data key encrypted to the recipient key (Recipient, CMS EnvelopedData); every\n'
    + 'chunk is authenticated before it is written, and the output appears under --out only once\n'
    + 'all of them have verified.',
  usage: [
    '  --in FILE              the sealed artefact',
    '  --out FILE             where to write the plaintext (mode 0600)',
    '  --recipient-key FILE   the RSA-2048 private key (PEM) whose public half is in the document',
    '  --attestation-doc FILE the attestation document: COSE_Sign1 as raw CBOR or base64',
    '  --context KEY=VALUE    the encryption context it must have been sealed with, exactly; repeat for',
    '                         each pair (required: it tells this model and version from any other sealed',
    '                         under the same key)',
    '  --key-id ARN           the ARN of the KMS key that must have wrapped its data key (required with',
    '                         --context: the context is no secret, and another key the role can use',
    '                         could wrap another model under it)',
    '  --any-artefact         open whatever artefact KMS opens, with no --context or --key-id (not recommended)',
    REGION_USAGE,
  ].join('\n'),
  options: {
    'in': { type: 'string' },
    'out': { type: 'string' },
    'recipient-key': { type: 'string' },
    'attestation-doc': { type: 'string' },
    'context': { type: 'string', multiple: true },
    'key-id': { type: 'string' },
    'any-artefact': { type: 'boolean' },
    'region': { type: 'string' },
  },
  async run(values, io) {
    const inPath = requireOption(values, 'in');
    const outPath = requireOption(values, 'out');
    const keyPath = requireOption(values, 'recipient-key');
    const documentPath = requireOption(values, 'attestation-doc');
    const expected = expectedArtefact(values);
    const privateKey = importRecipientPrivateKey(await readSmallFile(keyPath, MAX_RECIPIENT_KEY_PEM_BYTES));
    const attestationDocument = readDocumentFile(documentPath);
    const input = await openInputFile(inPath);
    try {
      const result = await writeFileAtomically(outPath, OPENED_FILE_MODE, (output) => open(input.stream, output, {
        unwrapDataKey: unwrapWithKmsRecipient(kmsClient(values.region), { attestationDocument, privateKey }),
        expected,
        onProgress: progressReporter(io, 'egpu artefact open', input.size),
      }));
      io.stdout(`opened ${inPath} -> ${outPath}: ${result.plaintextBytes} bytes in ${result.chunks} chunks, data key from ${result.keyId}\n`);
      return 0;
    } finally {
      input.stream.destroy();
    }
  },
};

export const ARTEFACT_COMMANDS: Command[] = [sealCommand, openCommand];

/** --context pairs (and --key-id), or --any-artefact: which artefact `open` may open. */
function expectedArtefact(values: Record<string, unknown>): ExpectedArtefact | 'any' {
  const pairs = values.context as string[] | undefined;
  if (values['any-artefact'] === true) {
    if (pairs !== undefined || values['key-id'] !== undefined) throw new UsageError('--any-artefact takes no --context or --key-id');
    return 'any';
  }
  if (pairs === undefined) {
    throw new UsageError('--context is required: give the KEY=VALUE pairs the artefact was sealed with (its name and version), so that no other artefact sealed under the same key opens in its place; --any-artefact skips the check');
  }
  const keyArn = values['key-id'] as string | undefined;
  if (keyArn === undefined) {
    throw new UsageError('--key-id is required with --context: give the ARN of the KMS key the artefact was sealed under (your AttestationBoundKey\'s), so that no artefact wrapped by another key the role can use opens in its place; --any-artefact skips both checks');
  }
  if (!/^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/[0-9a-zA-Z-]+$/.test(keyArn)) {
    throw new UsageError(`--key-id must be a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID, as the artefact's header records it), got '${keyArn}'`);
  }
  return { encryptionContext: parseContext(pairs), keyArn };
}

function kmsClient(region: unknown): KMSClient {
  return new KMSClient(typeof region === 'string' ? { region } : {});
}

/** Repeated `--context KEY=VALUE`; the first `=` separates, keys are non-empty and given once. */
function parseContext(assignments: readonly string[] | undefined): Record<string, string> {
  const context = new Map<string, string>();
  for (const assignment of assignments ?? []) {
    const separator = assignment.indexOf('=');
    if (separator <= 0) {
      throw new UsageError(`--context must be KEY=VALUE, got '${assignment}'`);
    }
    const key = assignment.slice(0, separator);
    if (context.has(key)) {
      throw new UsageError(`--context gives '${key}' twice`);
    }
    context.set(key, assignment.slice(separator + 1));
  }
  return Object.fromEntries(context);
}
