import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3_assets from 'aws-cdk-lib/aws-s3-assets';
import { Stack, Token, TokenComparison, Validations } from 'aws-cdk-lib';
import { Construct } from 'constructs';
import { AttestationBoundKey } from '../attestation-kms/attestation-bound-key';
import { EnclaveGpuMetrics } from '../observability/metric-namespace';
import { EnclaveImageConfig } from './enclave-image';
import { GpuRuntimeConfig } from './gpu-runtime';
import { propError } from './validation';

/**
 * The instance permissions Session Manager needs, and no more (the custom-policy minimum of
 * the Systems Manager User Guide, instead of the broader AmazonSSMManagedInstanceCore).
 */
const SESSION_MANAGER_ACTIONS = [
  'ssm:UpdateInstanceInformation',
  'ssmmessages:CreateControlChannel',
  'ssmmessages:CreateDataChannel',
  'ssmmessages:OpenControlChannel',
  'ssmmessages:OpenDataChannel',
];

/** A role an enclave parent instance can run as: trusted by EC2, with no permissions of its own. */
export function createParentRole(scope: Construct, id: string): iam.Role {
  return new iam.Role(scope, id, {
    assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com'),
    description: 'Parent instance of a Nitro enclave with GPU offload (cdk-enclave-gpu)',
  });
}

/**
 * Everything the parent instance may do: open Session Manager sessions, read its one
 * enclave image object, its one runtime archive and that archive's install script, and
 * publish metrics into the `EnclaveGPU` namespace only (observability and the readiness
 * signal add their statements).
 */
export class EnclaveParentPolicy extends Construct {
  public readonly policy: iam.Policy;

  /**
   * @param installer the runtime's install script (a file asset)
   */
  constructor(scope: Construct, id: string, role: iam.IRole, image: EnclaveImageConfig, runtime: GpuRuntimeConfig, installer: s3_assets.Asset) {
    super(scope, id);
    this.policy = new iam.Policy(this, 'Resource', {
      roles: [role],
      statements: [
        new iam.PolicyStatement({
          sid: 'SessionManager',
          actions: SESSION_MANAGER_ACTIONS,
          resources: ['*'],
        }),
        new iam.PolicyStatement({
          sid: 'ReadEnclaveImage',
          actions: ['s3:GetObject'],
          resources: [image.bucket.arnForObjects(image.objectKey)],
        }),
        new iam.PolicyStatement({
          sid: 'ReadGpuRuntime',
          actions: ['s3:GetObject'],
          resources: [runtime.bucket.arnForObjects(runtime.objectKey), installer.bucket.arnForObjects(installer.s3ObjectKey)],
        }),
        new iam.PolicyStatement({
          sid: 'PublishEnclaveGpuMetrics',
          actions: ['cloudwatch:PutMetricData'],
          resources: ['*'],
          conditions: { StringEquals: { 'cloudwatch:namespace': EnclaveGpuMetrics.NAMESPACE } },
        }),
      ],
    });
    Validations.of(this.policy).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        'Two statements use Resource "*" because their actions take no resource ARN: the Session Manager channel actions ' +
        `(the Systems Manager User Guide's minimal instance policy) and cloudwatch:PutMetricData, which a cloudwatch:namespace condition limits to ${EnclaveGpuMetrics.NAMESPACE}.`,
    });
  }
}

/**
 * What the enclave may ask KMS for, with the parent's credentials, in a policy of its own on
 * the parent's role: Decrypt and GenerateDataKey on the key, and GenerateRandom (which uses
 * no key, so only an IAM policy can allow it, with `Resource: "*"`), each only from an
 * enclave with the key's measurements. In an IAM policy rather than the key policy because
 * KMS refuses a key policy naming a principal it cannot see yet, which a role created in the
 * same deployment may not be. A policy of its own, so that the acknowledgement of the
 * wildcard covers these statements alone.
 */
export function enclaveKmsPolicy(scope: Construct, role: iam.IRole, key: AttestationBoundKey): iam.Policy {
  const policy = new iam.Policy(scope, 'EnclaveKms', { roles: [role], statements: [key.enclaveKeyStatement(), key.enclaveGenerateRandomStatement()] });
  Validations.of(policy).acknowledge({
    id: 'AwsSolutions-IAM5[Resource::*]',
    reason: 'Only the kms:GenerateRandom statement uses Resource "*": it takes no resource (it uses no KMS key), so AWS accepts only "*" for it; '
      + 'its kms:RecipientAttestation conditions allow it only from an enclave with the bound measurements. The key statement names the key.',
  });
  return policy;
}

/** How a principal's account compares with that of `scope`'s stack; undefined when the principal names none. */
function accountComparison(scope: Construct, principal: iam.IPrincipal): TokenComparison | undefined {
  const account = principal.principalAccount;
  return account === undefined ? undefined : Token.compareStrings(Stack.of(scope).account, account);
}

/** Whether a principal is of a construct's account, as aws-cdk-lib decides it for its own grants (unresolved on both sides: the same). */
export function isOfAccount(scope: Construct, principal: iam.IPrincipal): boolean {
  const comparison = accountComparison(scope, principal);
  return comparison === TokenComparison.SAME || comparison === TokenComparison.BOTH_UNRESOLVED;
}

/**
 * Refuses a role known to be of another account than the stack's: an instance profile takes
 * a role of its own account, and the construct's policies attach by role name in this one.
 */
export function checkRoleAccount(scope: Construct, role: iam.IRole): void {
  if (accountComparison(scope, role) === TokenComparison.DIFFERENT) {
    throw propError(scope, 'role', `is of account ${role.principalAccount}, the stack deploys to ${Stack.of(scope).account}`, 'An instance profile needs a role of its own account: pass a role of the stack\'s account');
  }
}
