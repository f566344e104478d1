import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';

/** A stack in a fixed account and region, with a VPC that has private subnets with egress. */
export function testStack(): { app: App; stack: Stack; vpc: ec2.Vpc } {
  const app = new App();
  const stack = new Stack(app, 'TestStack', { env: { account: '123456789012', region: 'us-east-1' } });
  const vpc = new ec2.Vpc(stack, 'Vpc', { maxAzs: 1, natGateways: 1 });
  return { app, stack, vpc };
}

/**
 * The instance's user data as text, with each CloudFormation token written as `${Ref}`
 * (for example `${AWS::Region}`), so tests can read the boot script as the instance will.
 */
export function userDataOf(template: Template): string {
  const instances = Object.values(template.findResources('AWS::EC2::Instance'));
  if (instances.length !== 1) {
    throw new Error(`expected one AWS::EC2::Instance, found ${instances.length}`);
  }
  return flatten(instances[0].Properties.UserData['Fn::Base64']);
}

function flatten(value: unknown): string {
  if (typeof value === 'string') {
    return value;
  }
  const node = value as Record<string, unknown>;
  if ('Fn::Join' in node) {
    const [separator, parts] = node['Fn::Join'] as [string, unknown[]];
    return parts.map(flatten).join(separator);
  }
  if ('Ref' in node) {
    return `\${${node.Ref as string}}`;
  }
  if ('Fn::GetAtt' in node) {
    return `\${${(node['Fn::GetAtt'] as string[]).join('.')}}`;
  }
  if ('Fn::Sub' in node) {
    return node['Fn::Sub'] as string;
  }
  throw new Error(`unexpected token in user data: ${JSON.stringify(value)}`);
}
