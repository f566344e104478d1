import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { writePlaceholderEif } from './helpers/eif';

const ROOT = path.resolve(__dirname, '..');

/** The first ```ts block after a heading. */
function codeBlockAfter(markdown: string, heading: string): string {
  const from = markdown.indexOf(`\n${heading}\n`);
  expect(from, `README has no heading '${heading}'`).toBeGreaterThanOrEqual(0);
  const match = /```ts\n([\s\S]*?)```/.exec(markdown.slice(from));
  expect(match, `no ts block after '${heading}'`).not.toBeNull();
  return match![1];
}

describe('README', () => {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');

  /**
   * Runs a README example as written, with the package name pointed at this checkout's
   * source and the EIF path at a placeholder image, and returns the synthesized template.
   * The script lives inside the repository so that its imports resolve.
   */
  function runExample(heading: string, stackName: string): any {
    const example = codeBlockAfter(readme, heading);
    const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'readme-example-'));
    const script = path.join(ROOT, 'test', `.readme-example-${process.pid}.ts`);
    const runnable = example
      .replace("from 'cdk-enclave-gpu'", `from ${JSON.stringify(path.join(ROOT, 'lib'))}`)
      .replace("'enclave/inference.eif'", JSON.stringify(writePlaceholderEif()))
      .replace('new App()', `new App({ outdir: ${JSON.stringify(outdir)} })`);
    expect(runnable).not.toContain('cdk-enclave-gpu');
    fs.writeFileSync(script, runnable);
    try {
      execFileSync(path.join(ROOT, 'node_modules', '.bin', 'tsx'), [script], { cwd: ROOT, stdio: 'pipe' });
    } finally {
      fs.rmSync(script);
    }
    return JSON.parse(fs.readFileSync(path.join(outdir, `${stackName}.template.json`), 'utf8'));
  }
  const ofType = (template: any, type: string) => Object.values<any>(template.Resources).filter((r) => r.Type === type);

  it('usage example synthesizes as a new user would write it', () => {
    expect(codeBlockAfter(readme, '## Usage').split('\n').filter((l) => l.trim()).length).toBeLessThanOrEqual(16);
    const template = runExample('## Usage', 'EnclaveInference');
    const instances = ofType(template, 'AWS::EC2::Instance');
    expect(instances).toHaveLength(1);
    expect(instances[0].Properties.EnclaveOptions).toEqual({ Enabled: true });
    expect(instances[0].Properties.InstanceType).toBe('g5.2xlarge');
  });

  it('key-binding example synthesizes one key, bound to the image, that the publisher may only seal with', () => {
    const template = runExample('## Binding keys to your enclave image', 'BoundKeys');
    const keys = ofType(template, 'AWS::KMS::Key');
    expect(keys).toHaveLength(1);
    const statements: any[] = keys[0].Properties.KeyPolicy.Statement;
    // The instance's role, created in the same deployment, is granted in a policy of its own.
    const keyUse = ofType(template, 'AWS::IAM::Policy').flatMap((policy) => policy.Properties.PolicyDocument.Statement).find((s: any) => s.Sid === 'EnclaveKeyUse');
    expect(keyUse.Condition.StringEqualsIgnoreCase['kms:RecipientAttestation:ImageSha384']).toMatch(/^[0-9a-f]{96}$/);
    const publisher = statements.find((s) => JSON.stringify(s.Principal).includes('model-publisher'));
    expect(publisher.Action).toEqual(['kms:Encrypt', 'kms:GenerateDataKeyWithoutPlaintext', 'kms:DescribeKey']);
    expect(ofType(template, 'AWS::KMS::Alias')[0].Properties.AliasName).toBe('alias/inference/model-weights');
  });

  it('fleet example synthesizes a group whose launch template enables Nitro Enclaves', () => {
    const template = runExample('## One instance or a fleet', 'EnclaveFleet');
    const [lt] = ofType(template, 'AWS::EC2::LaunchTemplate');
    expect(lt.Properties.LaunchTemplateData.EnclaveOptions).toEqual({ Enabled: true });
    const [group] = ofType(template, 'AWS::AutoScaling::AutoScalingGroup');
    expect([group.Properties.MinSize, group.Properties.MaxSize]).toEqual(['2', '8']);
  });

  it('shows the commands a fresh machine runs', () => {
    expect(readme).toContain('npm ci && npm run demo');
    expect(readme).toContain('npm ci && npm test');
  });
});
