import * as iam from 'aws-cdk-lib/aws-iam';
import { App, CfnParameter, RemovalPolicy, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { attestation_kms } from '../lib';

const { AttestationBoundKey } = attestation_kms;

const PCRS = { pcr0: 'a0'.repeat(48), pcr1: 'b1'.repeat(48), pcr2: 'c2'.repeat(48), pcr8: 'd8'.repeat(48) };
const CONDITIONS = {
  'kms:RecipientAttestation:ImageSha384': PCRS.pcr0,
  'kms:RecipientAttestation:PCR1': PCRS.pcr1,
  'kms:RecipientAttestation:PCR2': PCRS.pcr2,
  'kms:RecipientAttestation:PCR8': PCRS.pcr8,
};
/** Every KMS action that releases key material, or moves ciphertext to another key. */
const RELEASING = ['kms:Decrypt', 'kms:GenerateDataKey', 'kms:GenerateDataKeyPair', 'kms:DeriveSharedSecret', 'kms:ReEncryptFrom'];

function stackWithKey(
  props: Partial<attestation_kms.AttestationBoundKeyProps> = {},
  configure?: (stack: Stack, key: attestation_kms.AttestationBoundKey) => void,
) {
  const stack = new Stack(new App(), 'KeyStack', { env: { account: '123456789012', region: 'us-east-1' } });
  const key = new AttestationBoundKey(stack, 'ModelKey', { pcrs: PCRS, ...props });
  const role = new iam.Role(stack, 'ParentRole', { assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com') });
  key.grantEnclaveDecrypt(role);
  key.grantEnclaveGenerateDataKey(role);
  configure?.(stack, key);
  return { stack, key, role, template: Template.fromStack(stack) };
}

function keyPolicyStatements(template: Template): any[] {
  const [key] = Object.values(template.findResources('AWS::KMS::Key'));
  return key.Properties.KeyPolicy.Statement;
}

const actionsOf = (statement: any): string[] => [statement.Action].flat();
const releases = (action: string) => RELEASING.includes(action) || action === 'kms:*' || action === 'kms:ReEncrypt*' || action === 'kms:GenerateDataKey*';
const isAccountRoot = (statement: any) => JSON.stringify(statement.Principal).includes(':root');

describe('AttestationBoundKey', () => {
  const { template } = stackWithKey();
  const statements = keyPolicyStatements(template);

  it('is a symmetric key with rotation on, kept when the stack goes', () => {
    template.hasResource('AWS::KMS::Key', {
      Properties: { EnableKeyRotation: true, KeySpec: Match.absent() },
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
    });
  });

  it('keeps administration with the account root', () => {
    expect(statements).toContainEqual(expect.objectContaining({
      Effect: 'Allow',
      Principal: { AWS: { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':iam::123456789012:root']] } },
      Action: 'kms:*',
    }));
  });

  it('denies every principal the releasing actions unless each PCR matches, one Deny per PCR', () => {
    const denies = statements.filter((s) => s.Effect === 'Deny' && s.Condition);
    expect(denies).toHaveLength(4);
    for (const [conditionKey, value] of Object.entries(CONDITIONS)) {
      expect(denies).toContainEqual({
        Sid: `DenyWithout${conditionKey.split(':').pop()}`,
        Effect: 'Deny',
        Principal: { AWS: '*' },
        Action: ['kms:Decrypt', 'kms:GenerateDataKey', 'kms:GenerateDataKeyPair', 'kms:DeriveSharedSecret'],
        Resource: '*',
        Condition: { StringNotEqualsIgnoreCase: { [conditionKey]: value } },
      });
    }
  });

  it('denies kms:ReEncryptFrom to everyone', () => {
    expect(statements).toContainEqual({ Sid: 'DenyReEncryptFrom', Effect: 'Deny', Principal: { AWS: '*' }, Action: 'kms:ReEncryptFrom', Resource: '*' });
  });

  it('allows the granted role Decrypt and GenerateDataKey only under every PCR condition', () => {
    const role = { 'Fn::GetAtt': [expect.stringMatching(/^ParentRole/), 'Arn'] };
    expect(statements).toContainEqual({
      Sid: 'EnclaveDecrypt', Effect: 'Allow', Principal: { AWS: role }, Action: 'kms:Decrypt', Resource: '*',
      Condition: { StringEqualsIgnoreCase: CONDITIONS },
    });
    expect(statements).toContainEqual({
      Sid: 'EnclaveGenerateDataKey', Effect: 'Allow', Principal: { AWS: role }, Action: 'kms:GenerateDataKey', Resource: '*',
      Condition: { StringEqualsIgnoreCase: CONDITIONS },
    });
  });

  // GenerateRandom uses no key: a key policy statement for it would allow nothing.
  it('allows GenerateRandom in the grantee\'s IAM policy, never in the key policy, under every PCR condition', () => {
    expect(statements.some((statement) => actionsOf(statement).includes('kms:GenerateRandom'))).toBe(false);
    const stack = new Stack();
    const key = new AttestationBoundKey(stack, 'Key', { pcrs: PCRS });
    const role = new iam.Role(stack, 'Role', { assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com') });
    key.grantEnclaveGenerateRandom(role);
    Template.fromStack(stack).hasResourceProperties('AWS::IAM::Policy', {
      Roles: [{ Ref: Match.stringLikeRegexp('^Role') }],
      PolicyDocument: { Statement: [{ Effect: 'Allow', Action: 'kms:GenerateRandom', Resource: '*', Condition: { StringEqualsIgnoreCase: CONDITIONS } }] },
    });
    expect(key.enclaveGenerateRandomStatement().toStatementJson()).toEqual({
      Sid: 'EnclaveGenerateRandom', Effect: 'Allow', Action: 'kms:GenerateRandom', Resource: '*', Condition: { StringEqualsIgnoreCase: CONDITIONS },
    });
  });

  it('has no statement that lets a non-root principal release key material without the attestation conditions', () => {
    const allows = statements.filter((s) => s.Effect === 'Allow' && actionsOf(s).some(releases));
    expect(allows.length).toBeGreaterThan(1);
    for (const statement of allows.filter((s) => !isAccountRoot(s))) {
      expect(statement.Condition, statement.Sid).toEqual({ StringEqualsIgnoreCase: CONDITIONS });
    }
    // And the root's kms:* is overridden: for every PCR a Deny covers each releasing action.
    for (const action of RELEASING.filter((a) => a !== 'kms:ReEncryptFrom')) {
      for (const conditionKey of Object.keys(CONDITIONS)) {
        expect(statements.some((s) => s.Effect === 'Deny' && actionsOf(s).includes(action) && s.Condition?.StringNotEqualsIgnoreCase?.[conditionKey])).toBe(true);
      }
    }
  });

  it('puts the grants in the key policy only, not in the role', () => {
    template.resourceCountIs('AWS::IAM::Policy', 0);
  });

  it('lets grantEncrypt seal data without any key-releasing action', () => {
    const { template: t } = stackWithKey({}, (stack, key) => {
      key.grantEncrypt(new iam.Role(stack, 'Publisher', { assumedBy: new iam.AccountRootPrincipal() }));
    });
    const publisher = keyPolicyStatements(t).find((s) => JSON.stringify(s.Principal).includes('Publisher'));
    expect(publisher.Action).toEqual(['kms:Encrypt', 'kms:GenerateDataKeyWithoutPlaintext', 'kms:DescribeKey']);
    expect(actionsOf(publisher).some(releases)).toBe(false);
  });

  it('binds to only the PCRs given', () => {
    const { template: t } = stackWithKey({ pcrs: { pcr8: PCRS.pcr8 } });
    const decrypt = keyPolicyStatements(t).find((s) => s.Sid === 'EnclaveDecrypt');
    expect(decrypt.Condition).toEqual({ StringEqualsIgnoreCase: { 'kms:RecipientAttestation:PCR8': PCRS.pcr8 } });
  });

  it('accepts PCRs known only at deploy time', () => {
    const stack = new Stack(new App(), 'S');
    const pcr0 = new CfnParameter(stack, 'Pcr0').valueAsString;
    const key = new AttestationBoundKey(stack, 'Key', { pcrs: { pcr0 } });
    expect(key.pcrs.pcr0).toBe(pcr0);
  });

  it('applies alias, removal policy and pending window', () => {
    const { template: t } = stackWithKey({ alias: 'inference/model', removalPolicy: RemovalPolicy.DESTROY });
    t.hasResourceProperties('AWS::KMS::Alias', { AliasName: 'alias/inference/model' });
    t.hasResource('AWS::KMS::Key', { DeletionPolicy: 'Delete' });
  });

  it('exposes the condition block for IAM policies on keys it cannot change', () => {
    expect(AttestationBoundKey.attestationConditions({ pcr0: PCRS.pcr0, pcr3: 'e3'.repeat(48) })).toEqual({
      StringEqualsIgnoreCase: { 'kms:RecipientAttestation:ImageSha384': PCRS.pcr0, 'kms:RecipientAttestation:PCR3': 'e3'.repeat(48) },
    });
  });
});

describe('AttestationBoundKey validation', () => {
  const build = (pcrs: attestation_kms.Pcrs, allowDebugMode?: boolean) => {
    const stack = new Stack(new App(), 'S');
    new AttestationBoundKey(stack, 'Key', { pcrs, allowDebugMode });
    return stack;
  };

  it.each([
    [{ pcr0: 'a'.repeat(95) }, /S\/Key: pcrs is invalid: pcr0 must be 96 hex characters \(a SHA-384 digest\), got 95/],
    [{ pcr1: 'g'.repeat(96) }, /pcr1 contains characters that are not hex digits/],
    [{ pcr2: 'A'.repeat(96) }, /pcr2 must be lower-case hex/],
    [{}, /pcrs is empty. Give at least one PCR/],
  ])('refuses %j', (pcrs, message) => {
    expect(() => build(pcrs)).toThrow(message);
  });

  it.each([
    [{ pcr3: 'e3'.repeat(48) }, 'pcr3'],
    [{ pcr4: 'e4'.repeat(48) }, 'pcr4'],
    [{ pcr1: PCRS.pcr1 }, 'pcr1'],
    [{ pcr2: PCRS.pcr2, pcr3: 'e3'.repeat(48) }, 'pcr2, pcr3'],
  ])('refuses %j: PCRs that identify no enclave code', (pcrs, named) => {
    expect(() => build(pcrs)).toThrow(`S/Key: pcrs (${named}) identifies no enclave code: any image anyone builds would match. Give pcr0 (the whole image), pcr8 (its signing certificate), or pcr1 and pcr2 together`);
  });

  it.each([
    { pcr0: PCRS.pcr0 },
    { pcr8: PCRS.pcr8 },
    { pcr1: PCRS.pcr1, pcr2: PCRS.pcr2 },
    { pcr0: PCRS.pcr0, pcr3: 'e3'.repeat(48), pcr4: 'e4'.repeat(48) },
  ])('accepts %j', (pcrs) => {
    expect(() => build(pcrs)).not.toThrow();
  });

  it('refuses all-zero (debug-mode) PCRs, naming them', () => {
    expect(() => build({ pcr0: '0'.repeat(96), pcr1: '0'.repeat(96), pcr2: PCRS.pcr2 }))
      .toThrow(/pcrs.pcr0, pcrs.pcr1 are all zeros, the measurement of an enclave run in debug mode.*allowDebugMode: true/);
  });

  it('accepts all-zero PCRs with allowDebugMode, and warns', () => {
    const stack = build({ pcr0: '0'.repeat(96) }, true);
    Annotations.fromStack(stack).hasWarning('/S/Key', Match.stringLikeRegexp('pcrs.pcr0 all zeros: this key releases material to enclaves in debug mode'));
  });
});
