import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { describe, expect, it } from 'vitest';
import { EnclaveGpuInstance, EnclaveImage } from '../lib';
import { writePlaceholderEif } from './helpers/eif';
import { testStack } from './helpers/stack';

/**
 * cdk-nag's AwsSolutions pack over a stack that holds the construct. aws-cdk-lib 2.257 does
 * not yet hand the construct tree to validation plugins, so the pack is run directly on the
 * synthesized tree with validateScope(), which applies the same rules and acknowledgements.
 */
function awsSolutionsFindings(build: (scope: ReturnType<typeof testStack>) => void) {
  const scope = testStack();
  // The VPC is the test's, not the construct's: acknowledge its findings here so that only the construct's remain.
  Validations.of(scope.vpc).acknowledge({ id: 'AwsSolutions-VPC7', reason: 'Test VPC; flow logs are the application owner\'s choice.' });
  build(scope);
  scope.app.synth();
  const report = new AwsSolutionsChecks().validateScope(scope.app);
  return report.violations.map((v) => `${v.ruleName} at ${v.violatingResources.map((r) => r.constructPath).join(', ')}`);
}

describe('cdk-nag AwsSolutions', () => {
  it('finds nothing unacknowledged in the default EnclaveGpuInstance', () => {
    const findings = awsSolutionsFindings(({ stack, vpc }) => {
      new EnclaveGpuInstance(stack, 'Inference', { vpc, enclaveImage: EnclaveImage.fromEifFile(writePlaceholderEif()) });
    });
    expect(findings).toEqual([]);
  });

  it('finds nothing with termination protection on and an unlisted type', () => {
    const findings = awsSolutionsFindings(({ stack, vpc }) => {
      new EnclaveGpuInstance(stack, 'Inference', {
        vpc,
        instanceType: new ec2.InstanceType('p5.48xlarge'),
        allowUnlistedInstanceType: true,
        terminationProtection: true,
        enclaveImage: EnclaveImage.fromEifFile(writePlaceholderEif()),
      });
    });
    expect(findings).toEqual([]);
  });

  it('still reports what the construct does not acknowledge (the check can fail)', () => {
    const findings = awsSolutionsFindings(({ stack, vpc }) => {
      const construct = new EnclaveGpuInstance(stack, 'Inference', { vpc, enclaveImage: EnclaveImage.fromEifFile(writePlaceholderEif()) });
      (construct.instance.node.defaultChild as ec2.CfnInstance).monitoring = false;
    });
    expect(findings).toEqual([expect.stringMatching(/^AwsSolutions-EC28 at TestStack\/Inference\/Instance\/Resource$/)]);
  });
});
