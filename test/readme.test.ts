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

  it('usage example synthesizes as a new user would write it', () => {
    const example = codeBlockAfter(readme, '## Usage');
    expect(example.split('\n').filter((l) => l.trim()).length).toBeLessThanOrEqual(16);

    // Run it as written, with the package name pointed at this checkout's source and the EIF
    // path at a placeholder image. It lives inside the repository so that its imports resolve.
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

    const template = JSON.parse(fs.readFileSync(path.join(outdir, 'EnclaveInference.template.json'), 'utf8'));
    const instances = Object.values<any>(template.Resources).filter((r) => r.Type === 'AWS::EC2::Instance');
    expect(instances).toHaveLength(1);
    expect(instances[0].Properties.EnclaveOptions).toEqual({ Enabled: true });
    expect(instances[0].Properties.InstanceType).toBe('g5.2xlarge');
  });

  it('shows the commands a fresh machine runs', () => {
    expect(readme).toContain('npm ci && npm run demo');
    expect(readme).toContain('npm ci && npm test');
  });
});
