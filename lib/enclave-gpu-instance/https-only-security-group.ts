import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Construct } from 'constructs';

/**
 * A security group with no inbound rule and one outbound rule, TCP 443 to anywhere: what an
 * enclave parent and the AMI build instance need (AWS endpoints and package repositories
 * over HTTPS) and nothing more.
 *
 * @param description the group's description (CloudFormation replaces a group whose description changes)
 * @param destinations what the HTTPS traffic is for, shown in the egress rule's description
 */
export function httpsOnlySecurityGroup(scope: Construct, id: string, vpc: ec2.IVpc, description: string, destinations: string): ec2.SecurityGroup {
  const securityGroup = new ec2.SecurityGroup(scope, id, { vpc, description, allowAllOutbound: false });
  securityGroup.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(443), `HTTPS to ${destinations}`);
  return securityGroup;
}
