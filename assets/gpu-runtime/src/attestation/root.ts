/**
 * The root a chain must start at: the AWS Nitro root G1 (the default), or a root the caller
 * pins, such as the simulated NSM's in local mode.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { AttestationError } from './attestation-error';
import { AWS_NITRO_ROOT_G1_PEM, AWS_NITRO_ROOT_G1_SHA256 } from './roots/aws-nitro-root-g1';

export type RootOption = 'aws' | X509Certificate;

let awsRoot: X509Certificate | undefined;

/**
 * The embedded AWS root, checked against the fingerprint AWS publishes, so that a changed
 * PEM in the package can never become a trusted root.
 */
export function awsNitroRootG1(): X509Certificate {
  if (!awsRoot) {
    const root = new X509Certificate(AWS_NITRO_ROOT_G1_PEM);
    const fingerprint = createHash('sha256').update(root.raw).digest('hex');
    if (fingerprint !== AWS_NITRO_ROOT_G1_SHA256) {
      throw new AttestationError('ROOT_MISMATCH', `the embedded AWS Nitro root G1 has SHA-256 ${fingerprint}, not the published ${AWS_NITRO_ROOT_G1_SHA256}`);
    }
    awsRoot = root;
  }
  return awsRoot;
}

export function resolveRoot(root: RootOption): X509Certificate {
  return root === 'aws' ? awsNitroRootG1() : root;
}
