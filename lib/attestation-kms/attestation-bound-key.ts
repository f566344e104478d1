import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import { Annotations, Duration, RemovalPolicy } from 'aws-cdk-lib';
import { Construct } from 'constructs';
import { attestationConditionEntries } from './attestation-conditions';
import { givenPcrs, isDebugModePcr, pcrProblems } from './pcr-values';
import { Pcrs } from './pcrs';

/**
 * Properties of an {@link AttestationBoundKey}.
 */
export interface AttestationBoundKeyProps {
  /**
   * The enclave measurements the key is bound to. Every PCR given becomes a condition of
   * every statement that can release key material. They must identify the enclave's code:
   * PCR0, PCR8, or PCR1 and PCR2 together (PCR3 and PCR4 only narrow those down). Use
   * `EifMeasurements.fromFile()` for PCR0, PCR1, PCR2 (and PCR8) of an image.
   */
  readonly pcrs: Pcrs;

  /**
   * Accept all-zero PCRs, the measurements of an enclave run with `--debug-mode`, whose
   * memory the parent instance can read through the console. For development keys only.
   *
   * @default false
   */
  readonly allowDebugMode?: boolean;

  /**
   * An alias for the key, without the `alias/` prefix.
   *
   * @default - no alias
   */
  readonly alias?: string;

  /**
   * A description of the key.
   *
   * @default - "Released only to Nitro enclaves with the pinned measurements (cdk-enclave-gpu)"
   */
  readonly description?: string;

  /**
   * What happens to the key when it leaves the stack. Data encrypted under a deleted key
   * is lost for good.
   *
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;

  /**
   * How long a scheduled deletion waits, from 7 to 30 days.
   *
   * @default Duration.days(30)
   */
  readonly pendingWindow?: Duration;
}

/** Everything that releases key material, or could: denied to every principal without the attestation. */
const KEY_RELEASING_ACTIONS = ['kms:Decrypt', 'kms:GenerateDataKey', 'kms:GenerateDataKeyPair', 'kms:DeriveSharedSecret'];

/**
 * A symmetric KMS key (rotation on) that releases key material only to Nitro enclaves with
 * the given measurements.
 *
 * Its key policy:
 * - leaves administration with the account (the usual account-root statement), so IAM
 *   policies can manage the key;
 * - denies every principal, administrators and the account root included, `kms:Decrypt`,
 *   `kms:GenerateDataKey`, `kms:GenerateDataKeyPair` and `kms:DeriveSharedSecret` unless the
 *   request carries an attestation document whose PCRs match (one `Deny` per PCR, with
 *   `StringNotEqualsIgnoreCase` on the `kms:RecipientAttestation:*` key), and denies
 *   `kms:ReEncryptFrom` outright, so nobody can move ciphertext to a key without these
 *   conditions;
 * - allows the principals you grant with {@link grantEnclaveDecrypt} and
 *   {@link grantEnclaveGenerateDataKey} those actions under `StringEqualsIgnoreCase` on the
 *   same condition keys ({@link grantEnclaveGenerateRandom} adds the same conditions to an
 *   IAM policy instead: GenerateRandom uses no key).
 *
 * An administrator can still rewrite the key policy (that is what administration means);
 * watch `PutKeyPolicy` in CloudTrail.
 *
 * @example
 * const key = new attestation_kms.AttestationBoundKey(this, 'ModelKey', {
 *   pcrs: attestation_kms.EifMeasurements.fromFile('enclave/inference.eif'),
 * });
 * declare const role: iam.IRole;
 * key.grantEnclaveDecrypt(role);
 */
export class AttestationBoundKey extends Construct {
  /**
   * The IAM condition block that admits only enclaves with the given measurements:
   * `{ StringEqualsIgnoreCase: { 'kms:RecipientAttestation:ImageSha384': ..., 'kms:RecipientAttestation:PCR1': ... } }`.
   *
   * Use it in an IAM policy for a key whose key policy you cannot change (an imported `IKey`).
   */
  public static attestationConditions(pcrs: Pcrs): { [operator: string]: { [key: string]: string } } {
    return { StringEqualsIgnoreCase: Object.fromEntries(attestationConditionEntries(pcrs)) };
  }

  /** The KMS key. */
  public readonly key: kms.Key;

  /** The ARN of the key. */
  public readonly keyArn: string;

  /** The id of the key. */
  public readonly keyId: string;

  /** The measurements the key is bound to. */
  public readonly pcrs: Pcrs;

  constructor(scope: Construct, id: string, props: AttestationBoundKeyProps) {
    super(scope, id);
    this.pcrs = checkPcrs(this, props.pcrs, props.allowDebugMode ?? false);

    this.key = new kms.Key(this, 'Key', {
      description: props.description ?? 'Released only to Nitro enclaves with the pinned measurements (cdk-enclave-gpu)',
      enableKeyRotation: true,
      alias: props.alias,
      removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
      pendingWindow: props.pendingWindow,
    });
    this.keyArn = this.key.keyArn;
    this.keyId = this.key.keyId;

    for (const [conditionKey, value] of attestationConditionEntries(this.pcrs)) {
      this.key.addToResourcePolicy(new iam.PolicyStatement({
        sid: `DenyWithout${conditionKey.split(':').pop()}`,
        effect: iam.Effect.DENY,
        principals: [new iam.AnyPrincipal()],
        actions: KEY_RELEASING_ACTIONS,
        resources: ['*'],
        conditions: { StringNotEqualsIgnoreCase: { [conditionKey]: value } },
      }));
    }
    this.key.addToResourcePolicy(new iam.PolicyStatement({
      sid: 'DenyReEncryptFrom',
      effect: iam.Effect.DENY,
      principals: [new iam.AnyPrincipal()],
      actions: ['kms:ReEncryptFrom'],
      resources: ['*'],
    }));
  }

  /**
   * Lets the grantee (the parent instance's role: the enclave calls KMS with its
   * credentials) call `kms:Decrypt` from an enclave with the bound measurements, in the key
   * policy. For a role created in the same deployment as the key, prefer
   * {@link enclaveKeyStatement} in its own IAM policy (KMS may not see a new role yet).
   */
  public grantEnclaveDecrypt(grantee: iam.IGrantable): iam.Grant {
    return this.grantToEnclave(grantee, 'EnclaveDecrypt', ['kms:Decrypt']);
  }

  /**
   * Lets the grantee call `kms:GenerateDataKey` from an enclave with the bound measurements,
   * in the key policy (see {@link grantEnclaveDecrypt} on roles created with the key).
   */
  public grantEnclaveGenerateDataKey(grantee: iam.IGrantable): iam.Grant {
    return this.grantToEnclave(grantee, 'EnclaveGenerateDataKey', ['kms:GenerateDataKey']);
  }

  /**
   * Lets the grantee call `kms:GenerateRandom` from an enclave with the bound measurements
   * (random bytes only that enclave can read).
   *
   * GenerateRandom uses no KMS key, so no key policy can allow it: this adds
   * {@link enclaveGenerateRandomStatement} to the grantee's own IAM policy. cdk-nag reports
   * its `Resource: "*"` as `AwsSolutions-IAM5[Resource::*]`; acknowledge it on that policy, or
   * put the statement in a policy of its own and acknowledge it there.
   */
  public grantEnclaveGenerateRandom(grantee: iam.IGrantable): iam.Grant {
    const statement = this.enclaveGenerateRandomStatement();
    return iam.Grant.addToPrincipal({ grantee, actions: statement.actions, resourceArns: statement.resources, conditions: statement.conditions });
  }

  /**
   * The IAM statement that allows `kms:Decrypt` and `kms:GenerateDataKey` on this key only
   * from an enclave with the bound measurements (under {@link attestationConditions}): what
   * {@link grantEnclaveDecrypt} and {@link grantEnclaveGenerateDataKey} allow in the key
   * policy, for an IAM policy instead. Use it for a role created in the same deployment as
   * the key: KMS refuses a key policy that names a principal it cannot see yet, and a new
   * role may not be visible to it at once. The key policy allows the key's account to grant
   * through IAM, and its Denies hold either way.
   */
  public enclaveKeyStatement(): iam.PolicyStatement {
    return new iam.PolicyStatement({
      sid: 'EnclaveKeyUse',
      actions: ['kms:Decrypt', 'kms:GenerateDataKey'],
      resources: [this.keyArn],
      conditions: AttestationBoundKey.attestationConditions(this.pcrs),
    });
  }

  /**
   * The IAM statement that allows `kms:GenerateRandom` only from an enclave with the bound
   * measurements: `Resource: "*"` (GenerateRandom takes no resource, and AWS accepts only
   * `*` for it) under {@link attestationConditions}.
   */
  public enclaveGenerateRandomStatement(): iam.PolicyStatement {
    return new iam.PolicyStatement({
      sid: 'EnclaveGenerateRandom',
      actions: [GENERATE_RANDOM],
      resources: ['*'],
      conditions: AttestationBoundKey.attestationConditions(this.pcrs),
    });
  }

  /**
   * Lets the grantee encrypt data under the key (`kms:Encrypt`,
   * `kms:GenerateDataKeyWithoutPlaintext`, `kms:DescribeKey`), for example to seal model
   * weights for the enclave. None of these return key material.
   */
  public grantEncrypt(grantee: iam.IGrantable): iam.Grant {
    const actions = ['kms:Encrypt', 'kms:GenerateDataKeyWithoutPlaintext', 'kms:DescribeKey'];
    return iam.Grant.addStatementToResourcePolicy({
      grantee,
      actions,
      resourceArns: ['*'],
      resource: this.key,
      statement: new iam.PolicyStatement({ principals: [grantee.grantPrincipal], actions, resources: ['*'] }),
    });
  }

  private grantToEnclave(grantee: iam.IGrantable, sid: string, actions: string[]): iam.Grant {
    return iam.Grant.addStatementToResourcePolicy({
      grantee,
      actions,
      resourceArns: ['*'],
      resource: this.key,
      statement: new iam.PolicyStatement({
        sid,
        principals: [grantee.grantPrincipal],
        actions,
        resources: ['*'],
        conditions: AttestationBoundKey.attestationConditions(this.pcrs),
      }),
    });
  }
}

/** Takes no KMS key: allowed in IAM policies only. */
const GENERATE_RANDOM = 'kms:GenerateRandom';

function checkPcrs(scope: Construct, pcrs: Pcrs, allowDebugMode: boolean): Pcrs {
  const problems = pcrProblems(pcrs);
  if (problems.length > 0) {
    throw new Error(`${scope.node.path}: pcrs is invalid: ${problems.join('; ')}. Pass the values nitro-cli describe-eif prints, or EifMeasurements.fromFile().`);
  }
  const given = givenPcrs(pcrs);
  if (given.length === 0) {
    throw new Error(`${scope.node.path}: pcrs is empty. Give at least one PCR (EifMeasurements.fromFile() gives PCR0, PCR1 and PCR2), or the key would bind to nothing.`);
  }
  if (pcrs.pcr0 === undefined && pcrs.pcr8 === undefined && (pcrs.pcr1 === undefined || pcrs.pcr2 === undefined)) {
    throw new Error(
      `${scope.node.path}: pcrs (${given.map(([field]) => field).join(', ')}) identifies no enclave code: any image ` +
      'anyone builds would match. Give pcr0 (the whole image), pcr8 (its signing certificate), or pcr1 and pcr2 together ' +
      '(kernel and application); pcr3 and pcr4 (the parent\'s role and instance) can only narrow them. EifMeasurements.fromFile() gives PCR0, PCR1 and PCR2.',
    );
  }
  const debug = given.filter(([, value]) => isDebugModePcr(value)).map(([field]) => field);
  if (debug.length > 0 && !allowDebugMode) {
    throw new Error(
      `${scope.node.path}: pcrs.${debug.join(', pcrs.')} ${debug.length === 1 ? 'is' : 'are'} all zeros, the measurement of an enclave run in debug mode, ` +
      'whose memory the parent instance can read. Pass the real measurements, or set allowDebugMode: true for a development key.',
    );
  }
  if (debug.length > 0) {
    Annotations.of(scope).addWarningV2(
      'cdk-enclave-gpu:attestation-kms:debugMode',
      `pcrs.${debug.join(', pcrs.')} all zeros: this key releases material to enclaves in debug mode. Never use it for production data.`,
    );
  }
  return pcrs;
}
