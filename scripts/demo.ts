/**
 * The README's main job: synthesize the example app to CloudFormation, then show where the
 * template is and what it holds, check the guarantees it must keep, and run cdk-nag's
 * AwsSolutions pack over it; then run the whole offload path locally (offload-demo.ts:
 * SGS and an execution context as child processes, ResNet-50 through the EGP, every output
 * checked against onnxruntime run directly). Exits non-zero when a check fails.
 *
 *   npm run demo                       # with the placeholder enclave image
 *   ENCLAVE_EIF=my.eif npm run demo    # with your own
 */
import * as fs from 'fs';
import * as path from 'path';
import { Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { IConstruct } from 'constructs';
import { buildInferenceApp, PLACEHOLDER_EIF } from '../examples/inference-app';
import { NVIDIA_GPU_MEASUREMENTS } from '../lib/observability/metric-catalogue';
import { runOffloadDemo } from './offload-demo';
import { cfnValueAsText } from './template-text';

const OUTDIR = path.resolve(__dirname, '..', 'cdk.out', 'demo');
const HEREDOC = /cat > '([^']+)' <<'ENCLAVE_GPU_EOF'\n([\s\S]*?)ENCLAVE_GPU_EOF/g;

function main(): number {
  const eifPath = process.env.ENCLAVE_EIF;
  console.log('cdk-enclave-gpu demo: synthesizing examples/inference-app.ts');
  console.log(`  enclave image: ${eifPath ?? `${path.relative(process.cwd(), PLACEHOLDER_EIF)} (a placeholder; set ENCLAVE_EIF to your own .eif)`}`);
  fs.rmSync(OUTDIR, { recursive: true, force: true });
  const { app, stack } = buildInferenceApp({ eifPath, outdir: OUTDIR });
  const assembly = app.synth();
  const artifact = assembly.getStackByName(stack.stackName);
  const templatePath = path.join(assembly.directory, artifact.templateFile);
  const resources: Record<string, { Type: string; Properties?: any }> = artifact.template.Resources;

  console.log(`\nTemplate: ${path.relative(process.cwd(), templatePath)}`);
  const counts = new Map<string, number>();
  Object.values(resources).forEach((r) => counts.set(r.Type, (counts.get(r.Type) ?? 0) + 1));
  for (const [type, count] of [...counts].sort()) {
    console.log(`  ${String(count).padStart(3)}  ${type}`);
  }

  const [instance] = Object.values(resources).filter((r) => r.Type === 'AWS::EC2::Instance');
  const p = instance.Properties;
  const root = p.BlockDeviceMappings?.[0]?.Ebs ?? {};
  console.log('\nThe GPU instance:');
  console.log(`  InstanceType                ${p.InstanceType}`);
  console.log(`  EnclaveOptions.Enabled      ${p.EnclaveOptions?.Enabled}`);
  console.log(`  MetadataOptions.HttpTokens  ${p.MetadataOptions?.HttpTokens}`);
  console.log(`  Monitoring (detailed)       ${p.Monitoring}`);
  console.log(`  Root volume                 ${root.VolumeSize} GiB ${root.VolumeType}, encrypted: ${root.Encrypted}`);
  console.log(`  Key pair                    ${p.KeyName ?? 'none (Session Manager only)'}`);

  const userData = cfnValueAsText(p.UserData);
  console.log('\nBoot configuration it writes (tokens shown as ${...}):');
  for (const [, file, content] of userData.matchAll(HEREDOC)) {
    console.log(`  ${file}`);
    content.trimEnd().split('\n').forEach((line) => console.log(`  | ${line}`));
  }

  console.log('\nIAM permissions of the instance role:');
  const ofInstance = Object.entries(resources).filter(([id, r]) => r.Type === 'AWS::IAM::Policy' && id.startsWith('Inference')).map(([, r]) => r);
  for (const policy of ofInstance) {
    for (const s of policy.Properties.PolicyDocument.Statement) {
      const condition = s.Condition ? ` when ${JSON.stringify(s.Condition)}` : '';
      console.log(`  ${s.Sid}: ${[s.Action].flat().join(', ')}${condition}`);
    }
  }

  console.log('\nKMS key policy (who may obtain key material, and under which attestation):');
  for (const key of Object.values(resources).filter((r) => r.Type === 'AWS::KMS::Key')) {
    console.log(`  key rotation: ${key.Properties.EnableKeyRotation}`);
    for (const s of key.Properties.KeyPolicy.Statement) {
      const who = cfnValueAsText(s.Principal.AWS);
      const condition = s.Condition ? ` when ${Object.keys(Object.values<Record<string, string>>(s.Condition)[0]).map((k) => k.replace('kms:RecipientAttestation:', '')).join(', ')} ${Object.keys(s.Condition)[0]}` : '';
      console.log(`  ${s.Effect} ${[s.Action].flat().join(', ')} to ${who}${condition}`);
    }
  }

  console.log('\nObservability (namespace EnclaveGPU):');
  const alarms = Object.values(resources).filter((r) => r.Type === 'AWS::CloudWatch::Alarm').map((r) => r.Properties);
  for (const alarm of alarms) {
    const what = alarm.MetricName
      ? `${alarm.MetricName} ${alarm.ExtendedStatistic ?? alarm.Statistic}`
      : alarm.Metrics.find((m: any) => m.Expression).Expression;
    console.log(`  alarm: ${what} ${alarm.ComparisonOperator} ${alarm.Threshold} (${alarm.EvaluationPeriods} x ${alarm.Period ?? alarm.Metrics?.[0]?.MetricStat?.Period ?? 300}s)`);
  }
  const dashboard = Object.values(resources).find((r) => r.Type === 'AWS::CloudWatch::Dashboard');
  const widgets = dashboard ? JSON.parse(cfnValueAsText(dashboard.Properties.DashboardBody)).widgets : [];
  console.log(`  dashboard: ${widgets.map((w: any) => w.properties.title).join(' | ')}`);
  const agentConfigText = /enclave-gpu.json' <<'ENCLAVE_GPU_EOF'\n([\s\S]*?)ENCLAVE_GPU_EOF/.exec(userData)?.[1];
  const agentConfig = agentConfigText ? JSON.parse(agentConfigText) : undefined;
  const gpuMeasurements: string[] = agentConfig?.metrics.metrics_collected.nvidia_gpu.measurement ?? [];
  console.log(`  CloudWatch agent nvidia_gpu: ${gpuMeasurements.join(', ')}`);
  const widgetNamespaces = widgets.flatMap((w: any) => (w.properties.metrics ?? []).map((m: any[]) => m[0]));
  const alarmNamespaces = alarms.flatMap((a: any) => (a.Namespace ? [a.Namespace] : a.Metrics.filter((m: any) => m.MetricStat).map((m: any) => m.MetricStat.Metric.Namespace)));

  const nag = new AwsSolutionsChecks().validateScope(app);
  console.log(`\ncdk-nag AwsSolutions: ${nag.violations.length} unacknowledged finding(s)`);
  nag.violations.forEach((v) => console.log(`  ${v.ruleName}: ${v.violatingResources.map((r) => r.constructPath).join(', ')}`));
  console.log('  acknowledged, with the reasons given in code:');
  for (const [where, id, reason] of acknowledgements(app)) {
    console.log(`  - ${id} on ${where}: ${reason}`);
  }

  const keyPolicies = Object.values(resources).filter((r) => r.Type === 'AWS::KMS::Key').map((k) => k.Properties.KeyPolicy.Statement as any[]);
  const roleStatements = ofInstance.flatMap((policy) => policy.Properties.PolicyDocument.Statement as any[]);
  const unboundAllows = [...keyPolicies.flat(), ...roleStatements].filter((s) => s.Effect === 'Allow' && !JSON.stringify(s.Principal ?? {}).includes(':root')
    && [s.Action].flat().some((a: string) => ['kms:Decrypt', 'kms:GenerateDataKey'].includes(a)) && !s.Condition?.StringEqualsIgnoreCase?.['kms:RecipientAttestation:ImageSha384']);
  const failures = [
    alarms.length === 4 && widgets.length > 0 ? undefined : 'the dashboard or the four alarms are missing',
    [...widgetNamespaces, ...alarmNamespaces].every((ns: string) => ns === 'EnclaveGPU') ? undefined : 'a dashboard or alarm metric is outside the EnclaveGPU namespace',
    gpuMeasurements.length > 0 && gpuMeasurements.every((m) => NVIDIA_GPU_MEASUREMENTS.includes(m)) ? undefined : 'the agent config has no or unknown nvidia_gpu measurements',
    keyPolicies.length === 1 ? undefined : 'no attestation-bound KMS key',
    unboundAllows.length === 0 ? undefined : 'a key or role policy statement releases key material without the image measurement',
    p.EnclaveOptions?.Enabled === true ? undefined : 'EnclaveOptions.Enabled is not true',
    p.MetadataOptions?.HttpTokens === 'required' ? undefined : 'IMDSv2 is not required',
    root.Encrypted === true ? undefined : 'the root volume is not encrypted',
    userData.includes('--debug-mode') ? 'the enclave runs in debug mode' : undefined,
    nag.violations.length === 0 ? undefined : 'cdk-nag reported findings',
  ].filter((f): f is string => f !== undefined);
  if (failures.length > 0) {
    console.error(`\nFAILED: ${failures.join('; ')}`);
    return 1;
  }
  console.log(`\nOK: ${templatePath}`);
  return 0;
}

/** Every acknowledged rule in the tree: [construct path, rule id, reason]. */
function acknowledgements(root: IConstruct): Array<[string, string, string]> {
  return root.node.findAll()
    .flatMap((c) => c.node.metadata
      .filter((m) => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
      .flatMap((m) => Object.entries(m.data as Record<string, string>).map(([id, reason]): [string, string, string] => [c.node.path, id.replace(/^annotation::/i, ''), reason])));
}

/** Both parts run, whatever the first gives; the exit status is non-zero when either failed. */
async function run(): Promise<number> {
  const synthesized = main();
  const offloaded = await runOffloadDemo();
  return synthesized !== 0 ? synthesized : offloaded;
}

run().then(
  (status) => { process.exitCode = status; },
  (error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  },
);
