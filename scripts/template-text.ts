/**
 * Reads CloudFormation values as text, writing each token as `${Ref}` (for example
 * `${AWS::Region}`): how tests and the demo show the boot script an instance will run.
 */
export function cfnValueAsText(value: unknown): string {
  if (typeof value === 'string') {
    return value;
  }
  const node = value as Record<string, unknown>;
  if ('Fn::Base64' in node) {
    return cfnValueAsText(node['Fn::Base64']);
  }
  if ('Fn::Join' in node) {
    const [separator, parts] = node['Fn::Join'] as [string, unknown[]];
    return parts.map(cfnValueAsText).join(separator);
  }
  if ('Ref' in node) {
    return `\${${node.Ref as string}}`;
  }
  if ('Fn::GetAtt' in node) {
    return `\${${(node['Fn::GetAtt'] as string[]).join('.')}}`;
  }
  if ('Fn::Sub' in node && typeof node['Fn::Sub'] === 'string') {
    return node['Fn::Sub'];
  }
  throw new Error(`cannot show ${JSON.stringify(value)} as text`);
}
