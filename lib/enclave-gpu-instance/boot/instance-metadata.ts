/** The boot script's shell function that prints this instance's ID (from IMDSv2). */
export const INSTANCE_ID_FUNCTION = 'imds_instance_id';

/**
 * The commands that set $instance_id from the instance metadata service (IMDSv2: a session
 * token first), each followed by `orElse` when given.
 */
export function instanceIdCommands(orElse?: string): string[] {
  const tail = orElse === undefined ? '' : ` ${orElse}`;
  return [
    `imds_token=$(curl -sf -X PUT http://169.254.169.254/latest/api/token -H "X-aws-ec2-metadata-token-ttl-seconds: 60"${tail})`,
    `instance_id=$(curl -sf -H "X-aws-ec2-metadata-token: $imds_token" http://169.254.169.254/latest/meta-data/instance-id${tail})`,
  ];
}

/** Defines {@link INSTANCE_ID_FUNCTION}. */
export function instanceIdFunctionCommands(): string[] {
  const [tokenLine, idLine] = instanceIdCommands();
  return [
    `${INSTANCE_ID_FUNCTION}() {`,
    '  local imds_token instance_id',
    `  ${tokenLine} && ${idLine} && echo "$instance_id"`,
    '}',
  ];
}
