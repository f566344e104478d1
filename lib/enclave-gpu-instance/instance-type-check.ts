import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Token } from 'aws-cdk-lib';
import { IConstruct } from 'constructs';
import { GpuInstanceTypeInfo } from './gpu-instance-type';
import { GPU_ENCLAVE_INSTANCE_TYPES } from './instance-types.generated';
import { propError } from './validation';

/** The instance families in the catalogue, for error messages: `g4dn, g5, ...`. */
export function catalogueFamilies(): string[] {
  return [...new Set(Object.keys(GPU_ENCLAVE_INSTANCE_TYPES).map((name) => name.split('.')[0]))];
}

/**
 * Looks the instance type up in the catalogue of GPU instance types that support Nitro
 * Enclaves. Returns undefined for an unlisted type when `allowUnlisted` is set, and throws
 * otherwise.
 */
export function checkInstanceType(
  scope: IConstruct,
  instanceType: ec2.InstanceType,
  allowUnlisted: boolean,
): GpuInstanceTypeInfo | undefined {
  const name = instanceType.toString();
  const info = Token.isUnresolved(name) ? undefined : GPU_ENCLAVE_INSTANCE_TYPES[name];
  if (info || allowUnlisted) {
    return info;
  }
  const shown = Token.isUnresolved(name) ? 'is a token and' : `'${name}'`;
  throw propError(
    scope,
    'instanceType',
    `${shown} is not a GPU instance type that supports Nitro Enclaves`,
    `Choose one of the families ${catalogueFamilies().join(', ')} (for example g5.2xlarge), ` +
    "or set allowUnlistedInstanceType: true if DescribeInstanceTypes reports NitroEnclavesSupport 'supported' and a GPU for it",
  );
}
