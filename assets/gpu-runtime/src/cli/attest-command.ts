/**
 * `egpu attest verify` and `egpu attest simulate`: the attestation verifier and the local
 * mode's simulated NSM, from the command line.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LIMITS } from '../attestation/document';
import { SimulatedNsm } from '../attestation/simulated-nsm';
import { ROOT_CERTIFICATE_FILE } from '../attestation/simulated-nsm-state';
import { VerifiedAttestation, verifyAttestationDocument } from '../attestation/verify';
import {
  parseHex,
  parseInstant,
  parsePcrAssignments,
  readDocumentFile,
  readPublicKeyFile,
  readRootFile,
} from './attest-inputs';
import { Command, requireOption } from './command';

const verify: Command = {
  path: ['attest', 'verify'],
  summary: 'Verify an AWS Nitro Enclaves attestation document.\n'
    + 'Checks the certificate chain to the pinned root, validity at a time, CA and key-usage\n'
    + 'constraints, the ES384 signature, then the nonce and PCRs. Exit 0 when it verifies;\n'
    + '1 with the reason on stderr when it does not.',
  usage: [
    '  --doc FILE             the document: COSE_Sign1 as raw CBOR (tagged or not) or base64',
    '  --at ISO8601|now       when the certificates must be valid (default now)',
    '  --root aws|FILE.pem    the pinned root: aws (the AWS Nitro root G1, default) or a PEM file',
    '  --nonce HEX            the nonce the document must carry',
    '  --expect-pcr N=HEX     a PCR value the document must carry; repeat for several',
    '  --json                 print what it attests as one JSON object',
  ].join('\n'),
  options: {
    'doc': { type: 'string' },
    'at': { type: 'string' },
    'root': { type: 'string' },
    'nonce': { type: 'string' },
    'expect-pcr': { type: 'string', multiple: true },
    'json': { type: 'boolean' },
  },
  async run(values, io) {
    const docPath = requireOption(values, 'doc');
    const at = parseInstant(values.at as string | undefined);
    const nonce = values.nonce === undefined ? undefined : parseHex(values.nonce as string, '--nonce', LIMITS.nonceBytes);
    const expectedPcrs = Object.fromEntries(
      Object.entries(parsePcrAssignments(values['expect-pcr'] as string[] | undefined, '--expect-pcr')).map(([n, v]) => [n, v.toString('hex')]),
    );
    const rootOption = (values.root as string | undefined) ?? 'aws';
    const root = rootOption === 'aws' ? 'aws' : readRootFile(rootOption);
    const verified = verifyAttestationDocument(readDocumentFile(docPath), { root, at, expectedNonce: nonce, expectedPcrs });
    io.stdout(values.json ? `${JSON.stringify(toJson(verified))}\n` : summary(verified));
    return 0;
  },
};

const simulate: Command = {
  path: ['attest', 'simulate'],
  summary: 'Write an attestation document signed by the local-mode simulated NSM.\n'
    + 'Same format as AWS, under a local P-384 root that AWS verification never accepts. The\n'
    + 'NSM\'s root and intermediate are created in the state directory on first use, then reused.',
  usage: [
    '  --state DIR            the simulated NSM\'s directory (root.pem is the root to pin)',
    '  --out FILE             where to write the document (raw CBOR)',
    '  --pcr N=HEX            a PCR value (48 bytes); repeat for several; others are zero',
    '  --public-key FILE      public_key: a public key file, PEM or DER',
    '  --user-data HEX        user_data (at most 512 bytes)',
    '  --nonce HEX            nonce (at most 512 bytes)',
  ].join('\n'),
  options: {
    'state': { type: 'string' },
    'out': { type: 'string' },
    'pcr': { type: 'string', multiple: true },
    'public-key': { type: 'string' },
    'user-data': { type: 'string' },
    'nonce': { type: 'string' },
  },
  async run(values, io) {
    const stateDir = requireOption(values, 'state');
    const out = requireOption(values, 'out');
    const pcrs = parsePcrAssignments(values.pcr as string[] | undefined, '--pcr');
    const userData = values['user-data'] === undefined ? undefined : parseHex(values['user-data'] as string, '--user-data', LIMITS.userDataBytes);
    const nonce = values.nonce === undefined ? undefined : parseHex(values.nonce as string, '--nonce', LIMITS.nonceBytes);
    const publicKey = values['public-key'] === undefined ? undefined : readPublicKeyFile(values['public-key'] as string);
    const rootPath = join(stateDir, ROOT_CERTIFICATE_FILE);
    let nsm: SimulatedNsm;
    if (existsSync(rootPath)) {
      nsm = SimulatedNsm.load(stateDir);
    } else {
      nsm = SimulatedNsm.create();
      nsm.save(stateDir);
    }
    const document = nsm.attest({ pcrs, publicKey, userData, nonce });
    writeFileSync(out, document);
    io.stdout(`wrote ${out} (${document.length} bytes, module ${nsm.moduleId})\n`
      + `root: ${rootPath} (verify with: egpu attest verify --doc ${out} --root ${rootPath})\n`);
    return 0;
  },
};

export const ATTEST_COMMANDS: Command[] = [verify, simulate];

function toJson(verified: VerifiedAttestation): Record<string, unknown> {
  return {
    moduleId: verified.moduleId,
    timestamp: verified.timestamp.toISOString(),
    digest: verified.digest,
    pcrs: verified.pcrs,
    publicKey: verified.publicKey?.toString('hex'),
    userData: verified.userData?.toString('hex'),
    nonce: verified.nonce?.toString('hex'),
  };
}

function summary(verified: VerifiedAttestation): string {
  const pcrs = Object.entries(verified.pcrs).map(([index, value]) => `  PCR${index.padEnd(2)} ${value}\n`);
  return `verified: ${verified.moduleId}, made ${verified.timestamp.toISOString()}, digest ${verified.digest}\n${pcrs.join('')}`;
}
