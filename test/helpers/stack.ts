import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { cfnValueAsText } from '../../scripts/template-text';

/** A stack in a fixed account and region, with a VPC that has private subnets with egress. */
export function testStack(): { app: App; stack: Stack; vpc: ec2.Vpc } {
  const app = new App();
  const stack = new Stack(app, 'TestStack', { env: { account: '123456789012', region: 'us-east-1' } });
  const vpc = new ec2.Vpc(stack, 'Vpc', { maxAzs: 1, natGateways: 1 });
  return { app, stack, vpc };
}

/** The user data of the template's one instance, as text (see cfnValueAsText). */
export function userDataOf(template: Template): string {
  const instances = Object.values(template.findResources('AWS::EC2::Instance'));
  if (instances.length !== 1) {
    throw new Error(`expected one AWS::EC2::Instance, found ${instances.length}`);
  }
  return cfnValueAsText(instances[0].Properties.UserData);
}
