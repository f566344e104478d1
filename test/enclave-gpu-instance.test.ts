import * as crypto from 'crypto';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import { App, Duration, Size, Stack, Token, CfnParameter } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { Construct } from 'constructs';
import { describe, expect, it } from 'vitest';
import { EnclaveGpuFleet, EnclaveGpuInstance, EnclaveGpuInstanceProps, EnclaveImage, attestation_kms, observability as observability_module } from '../lib';
import { readinessDeadlineSeconds } from '../lib/enclave-gpu-instance/enclave-host';
import { cfnValueAsText } from '../scripts/template-text';
import { expectedPcrs, placeholderSections, typicalSections, writeEif, writePlaceholderEif, writeTempFile } from './helpers/eif';
import { hereDocument, runtimeInstallerOf, testStack, userDataOf } from './helpers/stack';

const KMS_ENDPOINT = 'kms.${AWS::Region}.${AWS::URLSuffix}';

const eifPath = writePlaceholderEif();

function synth(props: Partial<EnclaveGpuInstanceProps> = {}) {
  const { stack, vpc } = testStack();
  const construct = new EnclaveGpuInstance(stack, 'Inference', {
    vpc,
    enclaveImage: EnclaveImage.fromEifFile(eifPath),
    ...props,
  });
  return { stack, construct, template: Template.fromStack(stack) };
}

function instanceProps(template: Template): Record<string, any> {
  const [instance] = Object.values(template.findResources('AWS::EC2::Instance'));
  return instance.Properties;
}

describe('EnclaveGpuInstance defaults', () => {
  const { template, construct } = synth();
  const userData = userDataOf(template);

  it('enables Nitro Enclaves on a g5.2xlarge', () => {
    template.hasResourceProperties('AWS::EC2::Instance', {
      EnclaveOptions: { Enabled: true },
      InstanceType: 'g5.2xlarge',
    });
  });

  it('uses the Deep Learning Base OSS Nvidia Driver GPU AMI (Amazon Linux 2023) from its public SSM parameter', () => {
    const parameters = template.toJSON().Parameters as Record<string, { Type: string; Default: string }>;
    const [name] = Object.entries(parameters).find(([, p]) => p.Default === EnclaveGpuInstance.DEFAULT_MACHINE_IMAGE_PARAMETER)!;
    expect(parameters[name].Type).toBe('AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>');
    expect(instanceProps(template).ImageId).toEqual({ Ref: name });
  });

  it('requires IMDSv2', () => {
    template.hasResourceProperties('AWS::EC2::Instance', { MetadataOptions: { HttpTokens: 'required' } });
  });

  it('encrypts a 100 GiB gp3 root volume and turns on detailed monitoring', () => {
    template.hasResourceProperties('AWS::EC2::Instance', {
      Monitoring: true,
      BlockDeviceMappings: [{
        DeviceName: '/dev/xvda',
        Ebs: { Encrypted: true, VolumeSize: 100, VolumeType: 'gp3', DeleteOnTermination: true },
      }],
      PropagateTagsToVolumeOnCreation: true,
    });
  });

  it('has no key pair and a security group with no inbound rule and HTTPS out only', () => {
    expect(instanceProps(template).KeyName).toBeUndefined();
    template.resourceCountIs('AWS::EC2::SecurityGroupIngress', 0);
    template.hasResourceProperties('AWS::EC2::SecurityGroup', {
      GroupDescription: Match.stringLikeRegexp('no inbound'),
      SecurityGroupEgress: [{ CidrIp: '0.0.0.0/0', IpProtocol: 'tcp', FromPort: 443, ToPort: 443 }],
      SecurityGroupIngress: Match.absent(),
    });
  });

  it('runs as a role trusted by EC2 with no managed policies', () => {
    template.hasResourceProperties('AWS::IAM::Role', {
      AssumeRolePolicyDocument: {
        Statement: [{ Action: 'sts:AssumeRole', Effect: 'Allow', Principal: { Service: 'ec2.amazonaws.com' } }],
      },
      ManagedPolicyArns: Match.absent(),
    });
  });

  it('grants exactly: Session Manager channels, the enclave image object, the runtime object, PutMetricData in the EnclaveGPU namespace, the attestation log, signals to its own stack; and GenerateRandom from the enclave alone', () => {
    const policies = template.findResources('AWS::IAM::Policy');
    expect(Object.keys(policies)).toEqual([expect.stringMatching(/^InferencePolicy[0-9A-F]{8}$/), expect.stringMatching(/^InferencePolicyEnclaveKms/)]);
    const [parent, kms] = Object.values(policies);
    // The key and GenerateRandom (which uses no key, so no key policy can allow it), from the enclave only.
    const attested = { StringEqualsIgnoreCase: { 'kms:RecipientAttestation:ImageSha384': expect.stringMatching(/^[0-9a-f]{96}$/), 'kms:RecipientAttestation:PCR1': expect.stringMatching(/^[0-9a-f]{96}$/), 'kms:RecipientAttestation:PCR2': expect.stringMatching(/^[0-9a-f]{96}$/) } };
    expect(kms.Properties.PolicyDocument.Statement).toEqual([
      { Sid: 'EnclaveKeyUse', Effect: 'Allow', Action: ['kms:Decrypt', 'kms:GenerateDataKey'], Resource: { 'Fn::GetAtt': [expect.stringMatching(/^InferenceKey/), 'Arn'] }, Condition: attested },
      { Sid: 'EnclaveGenerateRandom', Effect: 'Allow', Action: 'kms:GenerateRandom', Resource: '*', Condition: attested },
    ]);
    const statements = parent.Properties.PolicyDocument.Statement;
    expect(statements).toHaveLength(6);
    expect(statements[5]).toEqual({
      Sid: 'SignalReadiness',
      Effect: 'Allow',
      Action: 'cloudformation:SignalResource',
      Resource: { Ref: 'AWS::StackId' },
    });
    expect(statements[4]).toEqual({
      Sid: 'ShipLogs',
      Effect: 'Allow',
      Action: ['logs:CreateLogStream', 'logs:PutLogEvents', 'logs:DescribeLogStreams'],
      Resource: [
        { 'Fn::GetAtt': [expect.stringMatching(/^InferenceObservabilityKernelAttestationLog/), 'Arn'] },
        { 'Fn::GetAtt': [expect.stringMatching(/^InferenceObservabilityBootLog/), 'Arn'] },
      ],
    });
    expect(statements[0]).toEqual({
      Sid: 'SessionManager',
      Effect: 'Allow',
      Action: [
        'ssm:UpdateInstanceInformation',
        'ssmmessages:CreateControlChannel',
        'ssmmessages:CreateDataChannel',
        'ssmmessages:OpenControlChannel',
        'ssmmessages:OpenDataChannel',
      ],
      Resource: '*',
    });
    expect(statements[1]).toMatchObject({ Sid: 'ReadEnclaveImage', Effect: 'Allow', Action: 's3:GetObject' });
    const objectArn = JSON.stringify(statements[1].Resource);
    expect(objectArn).toContain('cdk-hnb659fds-assets-123456789012-us-east-1');
    expect(objectArn).not.toContain('*');
    expect(statements[2]).toMatchObject({ Sid: 'ReadGpuRuntime', Effect: 'Allow', Action: 's3:GetObject' });
    const runtimeArn = JSON.stringify(statements[2].Resource);
    expect(runtimeArn).toMatch(/:s3:::cdk-hnb659fds-assets-123456789012-us-east-1\/[0-9a-f]{64}\.tar"/);
    expect(runtimeArn).not.toContain('*');
    expect(statements[3]).toEqual({
      Sid: 'PublishEnclaveGpuMetrics',
      Effect: 'Allow',
      Action: 'cloudwatch:PutMetricData',
      Resource: '*',
      Condition: { StringEquals: { 'cloudwatch:namespace': 'EnclaveGPU' } },
    });
  });

  it('starts the instance only once its policies are attached', () => {
    const [instance] = Object.values(template.findResources('AWS::EC2::Instance'));
    const policyIds = Object.keys(template.findResources('AWS::IAM::Policy'));
    expect(policyIds).toHaveLength(2);
    for (const policyId of policyIds) expect(instance.DependsOn).toContain(policyId);
  });

  it('installs and starts the CloudWatch agent before the enclave, with its configuration', () => {
    expect(userData).toContain('test -x /opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl || dnf install -y amazon-cloudwatch-agent');
    expect(userData).toContain("cat > '/opt/aws/amazon-cloudwatch-agent/etc/enclave-gpu.json' <<'ENCLAVE_GPU_EOF'");
    expect(userData).toContain('/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s -c file:/opt/aws/amazon-cloudwatch-agent/etc/enclave-gpu.json');
    expect(userData.indexOf('amazon-cloudwatch-agent-ctl -a fetch-config')).toBeLessThan(userData.indexOf('nitro-cli'));
    const config = JSON.parse(/enclave-gpu.json' <<'ENCLAVE_GPU_EOF'\n([\s\S]*?)ENCLAVE_GPU_EOF/.exec(userData)![1]);
    expect(config.metrics.namespace).toBe('EnclaveGPU');
    expect(config.logs.logs_collected.files.collect_list[0].log_group_name).toMatch(/^\$\{InferenceObservabilityKernelAttestationLog[0-9A-F]+\}$/);
    // The file the boot script tees its output into is the one the agent ships.
    const bootLog = config.logs.logs_collected.files.collect_list[1];
    expect(bootLog.log_group_name).toMatch(/^\$\{InferenceObservabilityBootLog[0-9A-F]+\}$/);
    expect(userData).toContain(`exec > >(tee -a ${bootLog.file_path}) 2>&1`);
  });

  it('creates a dashboard and four alarms for the instance', () => {
    template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
    template.resourceCountIs('AWS::CloudWatch::Alarm', 4);
    expect(construct.observability).toBeDefined();
  });

  it('tags every taggable resource it creates EnclaveGPU=true', () => {
    for (const type of ['AWS::EC2::Instance', 'AWS::EC2::SecurityGroup', 'AWS::IAM::Role']) {
      const resources = template.findResources(type);
      const ours = Object.entries(resources).filter(([id]) => id.startsWith('Inference'));
      expect(ours.length, type).toBeGreaterThan(0);
      for (const [id, resource] of ours) {
        const tags = resource.Properties.Tags;
        expect(tags, id).toEqual(expect.arrayContaining([{ Key: 'EnclaveGPU', Value: 'true' }]));
      }
    }
  });

  it('replaces the instance when the boot configuration changes', () => {
    // userDataCausesReplacement: the logical id carries a hash of the user data.
    const [logicalId] = Object.keys(template.findResources('AWS::EC2::Instance'));
    expect(logicalId).toMatch(/^InferenceInstance[0-9A-F]{8}[0-9a-f]{16}$/);
    const other = synth({ enclave: { memoryMiB: 8192 } }).template;
    expect(Object.keys(other.findResources('AWS::EC2::Instance'))).not.toContain(logicalId);
  });

  it('writes allocator.yaml with the enclave memory and vCPUs', () => {
    expect(userData).toContain(
      "cat > '/etc/nitro_enclaves/allocator.yaml' <<'ENCLAVE_GPU_EOF'\n---\n# Rendered by cdk-enclave-gpu from the EnclaveGpuInstance `enclave` prop.\nmemory_mib: 4096\ncpu_count: 2\nENCLAVE_GPU_EOF",
    );
    expect(construct.enclaveCpuCount).toBe(2);
    expect(construct.enclaveMemoryMiB).toBe(4096);
  });

  it("allowlists only the stack region's KMS endpoint for vsock-proxy, and points the proxy at it", () => {
    expect(userData).toContain(
      `cat > '/etc/nitro_enclaves/vsock-proxy.yaml' <<'ENCLAVE_GPU_EOF'\nallowlist:\n- {address: ${KMS_ENDPOINT}, port: 443}\nENCLAVE_GPU_EOF`,
    );
    expect(userData).toContain(
      `[Service]\nExecStart=\nExecStart=/usr/bin/vsock-proxy 8000 ${KMS_ENDPOINT} 443 --num_workers 32 --config /etc/nitro_enclaves/vsock-proxy.yaml\nRestart=always\nRestartSec=5s\n`,
    );
  });

  it('installs nitro-cli and starts the allocator, the proxy and the enclave', () => {
    expect(userData).toContain('command -v nitro-cli >/dev/null 2>&1 || dnf install -y aws-nitro-enclaves-cli');
    const enable = userData.split('\n').filter((line) => /^systemctl (enable --now|restart nitro)/.test(line));
    expect(enable).toEqual([
      // Restarted: an allocator already active would keep its earlier sizing.
      'systemctl restart nitro-enclaves-allocator.service',
      'systemctl enable --now nitro-enclaves-vsock-proxy.service',
      'systemctl enable --now enclave-gpu-enclave.service',
      'systemctl enable --now enclave-gpu-health.timer',
    ]);
    // Enabled as well: the enclave unit only follows it, so a reboot needs it to run on its own.
    expect(userData).toContain('systemctl enable nitro-enclaves-allocator.service\nsystemctl restart nitro-enclaves-allocator.service\n');
    expect(userData.indexOf('systemctl daemon-reload')).toBeLessThan(userData.indexOf('systemctl enable'));
  });

  it('fetches the enclave image from its asset and checks its SHA-256', () => {
    const sha256 = crypto.createHash('sha256').update(fs.readFileSync(eifPath)).digest('hex');
    expect(userData).toMatch(/aws s3 cp 's3:\/\/cdk-hnb659fds-assets-123456789012-us-east-1\/[0-9a-f]{64}\.eif' \/opt\/enclave-gpu\/enclave\.eif --region us-east-1/);
    expect(userData).toContain(`echo '${sha256}  /opt/enclave-gpu/enclave.eif' | sha256sum --check --strict -`);
  });

  it('runs the enclave with nitro-cli run-enclave, not in debug mode', () => {
    expect(userData).toContain(
      'ExecStart=/usr/bin/nitro-cli run-enclave --enclave-name enclave-gpu --eif-path /opt/enclave-gpu/enclave.eif --cpu-count 2 --memory 4096 --enclave-cid 16\n',
    );
    expect(userData).not.toContain('--debug-mode');
    // After the allocator, without pulling it in again (a oneshot without RemainAfterExit would rerun).
    const unit = hereDocument(userData, '/etc/systemd/system/enclave-gpu-enclave.service');
    expect(unit).toContain('After=nitro-enclaves-allocator.service ');
    expect(unit).not.toMatch(/^(Requires|Wants|BindsTo|Requisite)=.*nitro-enclaves-allocator/m);
  });

  it('checks the enclave every 30 s and, in no Auto Scaling group, only logs an unhealthy instance', () => {
    const script = hereDocument(userData, '/usr/local/libexec/enclave-gpu/health-check');
    expect(script).toContain('e.get("EnclaveName")=="enclave-gpu"');
    expect(script).toContain('if [ "$failures" -ge 3 ]; then\n  echo "instance unhealthy: it is in no Auto Scaling group, so repair or replace it"\nfi');
    expect(script).not.toContain('autoscaling');
    expect(userData).not.toContain('autoscaling');
    expect(userData).toContain("chmod 0755 '/usr/local/libexec/enclave-gpu/health-check'");
    expect(userData).toContain('[Timer]\nOnBootSec=120s\nOnUnitActiveSec=30s\nAccuracySec=1s\n');
    // Bounded: a oneshot has no start timeout of its own, and one hung run would stop every later one.
    expect(userData).toContain('[Service]\nType=oneshot\nExecStart=/usr/local/libexec/enclave-gpu/health-check\nTimeoutStartSec=60s\n');
  });

  /** The rendered health check in a temporary directory, its state and the context's socket moved there too. */
  function healthCheckIn(dir: string): string {
    const script = hereDocument(userData, '/usr/local/libexec/enclave-gpu/health-check')
      .replace(/\/run\/enclave-gpu-health/g, path.join(dir, 'state'))
      .replace(/\/run\/enclave-gpu\/context\.sock/g, path.join(dir, 'context.sock'));
    fs.writeFileSync(path.join(dir, 'health-check'), script, { mode: 0o755 });
    return path.join(dir, 'health-check');
  }

  it('finds the instance healthy only with the enclave RUNNING, the KMS proxy running, SGS answering and the context listening', () => {
    // The rendered check, run with nitro-cli, systemctl, curl and ss stubbed: --probe only checks; without it failures are counted.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'egpu-health-'));
    const healthCheck = healthCheckIn(dir);
    const socket = path.join(dir, 'context.sock');
    const check = (state: { enclave: string; proxy?: boolean; sgs: boolean; context: boolean }, probe: boolean) => {
      fs.writeFileSync(path.join(dir, 'nitro-cli'), `#!/bin/bash\necho '[{"EnclaveName": "enclave-gpu", "State": "${state.enclave}"}]'\n`, { mode: 0o755 });
      fs.writeFileSync(path.join(dir, 'systemctl'), `#!/bin/bash\n[ "$*" = "is-active --quiet nitro-enclaves-vsock-proxy.service" ] && exit ${state.proxy === false ? 3 : 0}\nexit 1\n`, { mode: 0o755 });
      fs.writeFileSync(path.join(dir, 'curl'), `#!/bin/bash\nexit ${state.sgs ? 0 : 7}\n`, { mode: 0o755 });
      fs.writeFileSync(path.join(dir, 'ss'), `#!/bin/bash\n[ "$*" = "-xlH src ${socket}" ] && ${state.context ? `echo "u_str LISTEN 0 511 ${socket} 1 * 0"` : 'true'}\n`, { mode: 0o755 });
      return spawnSync(healthCheck, probe ? ['--probe'] : [], { encoding: 'utf8', env: { ...process.env, PATH: `${dir}:${process.env.PATH}` } });
    };
    const healthy = { enclave: 'RUNNING', sgs: true, context: true };
    const noContext = `the execution context (egpu-context.service) does not listen on ${socket}`;
    expect(check(healthy, true).status).toBe(0);
    const down = check({ ...healthy, context: false }, true);
    expect(down.status).toBe(1);
    expect(down.stdout).toBe(`${noContext}\n`);
    expect(check({ ...healthy, enclave: 'TERMINATING', sgs: false }, true).stdout).toBe('enclave enclave-gpu is TERMINATING; SGS does not answer http://127.0.0.1:7411/health\n');
    expect(check({ ...healthy, proxy: false }, true).stdout).toBe('the KMS vsock-proxy (nitro-enclaves-vsock-proxy.service) is not running\n');
    expect(fs.existsSync(path.join(dir, 'state', 'failures'))).toBe(false); // a probe counts nothing
    expect(check({ ...healthy, context: false }, false).stdout).toBe(`${noContext} (failed check 1)\n`);
    expect(check(healthy, false).status).toBe(0);
    expect(fs.existsSync(path.join(dir, 'state', 'failures'))).toBe(false); // a passing check resets the count
  });

  it.skipIf(spawnSync('ss', ['-V']).status !== 0)('tells a listening context from a stale socket file with the real ss', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'egpu-health-ss-'));
    const healthCheck = healthCheckIn(dir);
    for (const [name, body] of [['nitro-cli', `echo '[{"EnclaveName": "enclave-gpu", "State": "RUNNING"}]'`], ['systemctl', 'exit 0'], ['curl', 'exit 0']]) {
      fs.writeFileSync(path.join(dir, name), `#!/bin/bash\n${body}\n`, { mode: 0o755 });
    }
    const probe = () => spawnSync(healthCheck, ['--probe'], { encoding: 'utf8', env: { ...process.env, PATH: `${dir}:${process.env.PATH}` } });
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(path.join(dir, 'context.sock'), resolve));
    expect(probe().status).toBe(0);
    await new Promise<void>((resolve) => server.close(() => resolve()));
    fs.writeFileSync(path.join(dir, 'context.sock'), ''); // what a crashed context leaves behind
    expect(probe().stdout).toContain('does not listen on');
  });

  // The script's clock starts after the instance booted and cloud-init ran; CloudFormation's
  // at the instance's creation: the script gives up early enough for its FAILURE to arrive first.
  it.each([[60, 30], [300, 150], [1200, 1020], [3600, 3150], [12 * 3600, 12 * 3600 - 600]])(
    'gives up waiting for readiness with bootTimeout %i s at %i s into the boot', (timeout, deadline) => {
      expect(readinessDeadlineSeconds(timeout)).toBe(deadline);
    });

  it('is created only once its boot signals ready, within 20 minutes', () => {
    const [id, instance] = Object.entries(template.findResources('AWS::EC2::Instance'))[0];
    expect(instance.CreationPolicy).toEqual({ ResourceSignal: { Timeout: 'PT20M' } });
    const lines = userData.split('\n');
    expect(lines.slice(-9)).toEqual([
      "echo '[enclave-gpu] waiting for the enclave and the KMS proxy to run, SGS to answer and the context to start'",
      'until /usr/local/libexec/enclave-gpu/health-check --probe; do',
      '  if [ "$SECONDS" -ge 1020 ]; then echo "[enclave-gpu] not ready 1020 s into the boot"; false; fi',
      '  sleep 5',
      'done',
      'systemctl daemon-reload',
      'systemctl enable --now enclave-gpu-health.timer', // only once ready: it must not count failures of a booting instance
      "echo '[enclave-gpu] ready: signalling CloudFormation'",
      'signal_cloudformation SUCCESS',
    ]);
    const defined = lines.slice(lines.indexOf('signal_cloudformation() {'), lines.indexOf('report_boot_failure() {'));
    expect(defined).toEqual([
      'signal_cloudformation() {',
      '  local attempt',
      '  for attempt in $(seq 4); do',
      `    aws cloudformation signal-resource --stack-name 'TestStack' --logical-resource-id '${id}' --unique-id "$(imds_instance_id)" --status "$1" --region \${AWS::Region} && return 0`,
      '    [ "$attempt" -eq 4 ] || sleep $((attempt * 5))',
      '  done',
      '  echo "$1 not signalled to CloudFormation (refused or unreachable; none is expected when no stack operation waits for this instance)"',
      '}',
    ]);
  });

  it('with waitForReady: false, has no creation policy, no signal and no permission to signal, and starts the health check at once', () => {
    const { template } = synth({ waitForReady: false });
    const [instance] = Object.values(template.findResources('AWS::EC2::Instance'));
    expect(instance.CreationPolicy).toBeUndefined();
    const text = userDataOf(template);
    expect(text).not.toContain('signal');
    expect(text).not.toContain('health-check --probe');
    expect(text.split('\n').slice(-3)).toEqual(['systemctl daemon-reload', 'systemctl enable --now enclave-gpu-health.timer', "echo '[enclave-gpu] boot done'"]);
    expect(text).toContain('report_boot_failure() {\n  echo "[enclave-gpu] boot failed (line $1, exit $2)"\n}\n');
    expect(JSON.stringify(template.findResources('AWS::IAM::Policy'))).not.toContain('cloudformation:SignalResource');
  });

  it('renders the readiness deadline from bootTimeout', () => {
    expect(userDataOf(synth({ bootTimeout: Duration.minutes(45) }).template)).toContain('  if [ "$SECONDS" -ge 2362 ]; then'); // 45 min less an eighth
  });

  it('signals ready once the probe passes, retries a refused signal, and signals FAILURE when it never gets ready', () => {
    // The functions, the trap, the wait and the signal as rendered, with the probe, aws, curl and sleep stubbed.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'egpu-ready-'));
    const log = path.join(dir, 'calls.log');
    const stub = (name: string, body = '') => fs.writeFileSync(path.join(dir, name), `#!/bin/bash\necho "${name} $*" >> ${log}\n${body}\n`, { mode: 0o755 });
    stub('curl', 'echo i-0123456789abcdef0');
    stub('sleep');
    stub('probe', `n=$(grep -c '^probe' ${log}); [ "$n" -ge 3 ]`); // fails twice, then passes
    stub('systemctl');
    const lines = userData.split('\n');
    const functions = lines.slice(2, lines.findIndex((line) => line.startsWith('trap ')) + 1);
    const ending = lines.slice(-8).map((line) => line.replace('/usr/local/libexec/enclave-gpu/health-check --probe', 'probe'));
    const run = (deadline: number, awsBody = '') => {
      fs.writeFileSync(log, '');
      stub('aws', awsBody);
      const script = ['set -euo pipefail', ...functions, ...ending].join('\n')
        .replace(/\$\{AWS::Region\}/g, 'us-east-1').replace('-ge 1020 ]', `-ge ${deadline} ]`).replace('not ready 1020 s', `not ready ${deadline} s`);
      const result = spawnSync('bash', ['-c', script], { encoding: 'utf8', env: { ...process.env, PATH: `${dir}:${process.env.PATH}` } });
      return { ...result, calls: fs.readFileSync(log, 'utf8') };
    };
    const signal = (status: string) => `aws cloudformation signal-resource --stack-name TestStack --logical-resource-id ${instanceLogicalId} --unique-id i-0123456789abcdef0 --status ${status} --region us-east-1`;
    const instanceLogicalId = Object.keys(template.findResources('AWS::EC2::Instance'))[0];

    const ready = run(600);
    expect(ready.status).toBe(0);
    expect(ready.calls.match(/^probe/gm)).toHaveLength(3);
    expect(ready.calls).toContain('systemctl enable --now enclave-gpu-health.timer\n');
    expect(ready.calls.endsWith(`${signal('SUCCESS')}\n`)).toBe(true);

    // CloudFormation refuses twice (throttled, or IAM still propagating), then takes the signal.
    const throttled = run(600, `n=$(grep -c '^aws' ${log}); [ "$n" -ge 3 ]`);
    expect(throttled.status).toBe(0);
    expect(throttled.calls.match(/^aws cloudformation signal-resource .* --status SUCCESS /gm)).toHaveLength(3);
    expect(throttled.calls.match(/^sleep .*/gm)).toEqual(['sleep 5', 'sleep 5', 'sleep 5', 'sleep 10']); // two in the wait, then 5 and 10 s between signals

    const late = run(0);
    expect(late.status).toBe(1);
    expect(late.stdout).toContain('[enclave-gpu] not ready 0 s into the boot\n[enclave-gpu] boot failed (line ');
    expect(late.calls).toContain(`${signal('FAILURE')}\n`);
    expect(late.calls).not.toContain('SUCCESS');
    expect(late.calls).not.toContain('systemctl'); // the health check never started
  });

  it('renders a boot script, a health check and a runtime installer that bash parses', () => {
    const fleetStack = testStack();
    new EnclaveGpuFleet(fleetStack.stack, 'Fleet', { vpc: fleetStack.vpc, enclaveImage: EnclaveImage.fromEifFile(eifPath) });
    const [launchTemplate] = Object.values(Template.fromStack(fleetStack.stack).findResources('AWS::EC2::LaunchTemplate'));
    const scripts = [userData, cfnValueAsText(launchTemplate.Properties.LaunchTemplateData.UserData)];
    for (const script of [...scripts]) {
      scripts.push(hereDocument(script, '/usr/local/libexec/enclave-gpu/health-check'), runtimeInstallerOf(script));
    }
    for (const script of scripts) {
      const parsed = spawnSync('bash', ['-n'], { input: script, encoding: 'utf8' });
      expect(parsed.stderr).toBe('');
      expect(parsed.status).toBe(0);
    }
    expect(spawnSync('bash', ['-n'], { input: 'if true; then\n', encoding: 'utf8' }).status).not.toBe(0); // the check can fail
  });

  it('stops the script on the first failing step', () => {
    expect(userData.split('\n').slice(0, 2)).toEqual(['#!/bin/bash', 'set -euo pipefail']);
  });

  it('rotates the kernel-attestation log SGS appends to (copytruncate: SGS keeps it open)', () => {
    const config = hereDocument(userData, '/etc/logrotate.d/enclave-gpu');
    expect(config).toContain('/var/log/enclave-gpu/kernel-attestation.jsonl {\n    daily\n    maxsize 256M\n    rotate 7\n');
    expect(config).toContain('    copytruncate\n}\n');
    expect(userData).toContain('command -v logrotate >/dev/null 2>&1 || dnf install -y logrotate');
  });

  it('signals CloudFormation FAILURE at once when a boot step fails, before the health check exists', () => {
    // The boot script's trap and its first steps, run with aws and curl stubbed and a step that fails.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'egpu-boot-'));
    const log = path.join(dir, 'calls.log');
    for (const name of ['aws', 'curl']) {
      fs.writeFileSync(path.join(dir, name), `#!/bin/bash\necho "${name} $*" >> ${log}\n${name === 'curl' ? 'echo i-0123456789abcdef0' : ''}\n`, { mode: 0o755 });
    }
    const lines = userData.split('\n');
    const trapEnd = lines.findIndex((line) => line.startsWith('trap '));
    expect(trapEnd).toBeGreaterThan(0);
    expect(lines.findIndex((line) => line.includes('dnf install'))).toBeGreaterThan(trapEnd); // armed before any step that can fail
    const script = ['set -euo pipefail', ...lines.slice(2, trapEnd + 1).filter((line) => !line.startsWith('exec >')), 'echo before', 'false', 'echo after']
      .join('\n').replace(/\$\{AWS::Region\}/g, 'us-east-1');
    const run = spawnSync('bash', ['-c', script], { encoding: 'utf8', env: { ...process.env, PATH: `${dir}:${process.env.PATH}` } });
    expect(run.status).toBe(1);
    expect(run.stdout).toContain('before\n[enclave-gpu] boot failed (line ');
    expect(run.stdout).not.toContain('after');
    const calls = fs.readFileSync(log, 'utf8');
    expect(calls).toMatch(/^aws cloudformation signal-resource --stack-name TestStack --logical-resource-id InferenceInstance\w+ --unique-id i-0123456789abcdef0 --status FAILURE --region us-east-1$/m);
    expect(calls).not.toContain('autoscaling'); // no group to report to
  });
});

describe('EnclaveGpuInstance options', () => {
  it('renders the requested instance type and enclave size', () => {
    const { template } = synth({
      instanceType: new ec2.InstanceType('g6e.2xlarge'),
      enclave: { cpuCount: 4, memoryMiB: 16384 },
    });
    template.hasResourceProperties('AWS::EC2::Instance', { InstanceType: 'g6e.2xlarge' });
    const userData = userDataOf(template);
    expect(userData).toContain('memory_mib: 16384\ncpu_count: 4\n');
    expect(userData).toContain('--cpu-count 4 --memory 16384 --enclave-cid 16');
  });

  it('adds --debug-mode only when debugMode is set', () => {
    const { template } = synth({ debugMode: true });
    expect(userDataOf(template)).toContain('--enclave-cid 16 --debug-mode\n');
  });

  it('uses the given CID and KMS proxy port', () => {
    const userData = userDataOf(synth({ enclaveCid: 20, kmsProxyVsockPort: 8100 }).template);
    expect(userData).toContain('--enclave-cid 20');
    expect(userData).toContain(`ExecStart=/usr/bin/vsock-proxy 8100 ${KMS_ENDPOINT} 443`);
  });

  it('attaches its policy to a role you bring and creates no role', () => {
    const { stack, vpc } = testStack();
    const role = iam.Role.fromRoleArn(stack, 'Existing', 'arn:aws:iam::123456789012:role/inference-parent');
    new EnclaveGpuInstance(stack, 'Inference', { vpc, role, enclaveImage: EnclaveImage.fromEifFile(eifPath) });
    const template = Template.fromStack(stack);
    template.resourceCountIs('AWS::IAM::Role', 0);
    template.hasResourceProperties('AWS::IAM::Policy', { Roles: ['inference-parent'] });
  });

  it('uses a security group you bring and creates none', () => {
    const { stack, vpc } = testStack();
    const securityGroup = new ec2.SecurityGroup(stack, 'Mine', { vpc });
    new EnclaveGpuInstance(stack, 'Inference', { vpc, securityGroup, enclaveImage: EnclaveImage.fromEifFile(eifPath) });
    const template = Template.fromStack(stack);
    template.resourceCountIs('AWS::EC2::SecurityGroup', 1);
  });

  it('creates no CloudWatch resources and no agent with observability: false', () => {
    const { template, construct } = synth({ observability: false });
    template.resourceCountIs('AWS::CloudWatch::Dashboard', 0);
    template.resourceCountIs('AWS::CloudWatch::Alarm', 0);
    template.resourceCountIs('AWS::Logs::LogGroup', 0);
    expect(userDataOf(template)).not.toContain('amazon-cloudwatch-agent');
    expect(construct.observability).toBeUndefined();
    const [policy] = Object.values(template.findResources('AWS::IAM::Policy'));
    expect(policy.Properties.PolicyDocument.Statement.map((s: any) => s.Sid)).toEqual(['SessionManager', 'ReadEnclaveImage', 'ReadGpuRuntime', 'PublishEnclaveGpuMetrics', 'SignalReadiness']);
  });

  it('uses an observability construct you pass, and grants the agent on its log group', () => {
    const { stack, vpc } = testStack();
    const enclaveImage = EnclaveImage.fromEifFile(eifPath);
    const observability = new observability_module.EnclaveGpuObservability(stack, 'Shared', { enclaveImage: observability_module.EnclaveGpuMetrics.enclaveImageDimension(enclaveImage.pcrs!.pcr0!) });
    new EnclaveGpuInstance(stack, 'Inference', { vpc, observability, enclaveImage });
    const template = Template.fromStack(stack);
    template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
    const [policy] = Object.values(template.findResources('AWS::IAM::Policy'));
    expect(JSON.stringify(policy.Properties.PolicyDocument)).toMatch(/SharedKernelAttestationLog/);
  });

  it('refuses an observability construct that watches another enclave image or another instance', () => {
    const enclaveImage = EnclaveImage.fromEifFile(eifPath);
    const published = observability_module.EnclaveGpuMetrics.enclaveImageDimension(enclaveImage.pcrs!.pcr0!);
    const withObservability = (props: Partial<observability_module.EnclaveGpuObservabilityProps>) => () => {
      const { stack, vpc } = testStack();
      const observability = new observability_module.EnclaveGpuObservability(stack, 'Shared', { enclaveImage: published, ...props });
      new EnclaveGpuInstance(stack, 'Inference', { vpc, observability, enclaveImage });
    };
    expect(withObservability({ enclaveImage: 'ab'.repeat(8) })).toThrow(
      new RegExp(`TestStack/Inference: observability watches enclave image 'abababababababab', but this enclave image's metrics are published as '${published}'`),
    );
    expect(withObservability({ instanceId: 'i-0123456789abcdef0' })).toThrow(/observability watches one other instance \(instanceId i-0123456789abcdef0\).*build it without instanceId/);
  });

  it('waits bootTimeout for the ready signal', () => {
    const [instance] = Object.values(synth({ bootTimeout: Duration.minutes(45) }).template.findResources('AWS::EC2::Instance'));
    expect(instance.CreationPolicy).toEqual({ ResourceSignal: { Timeout: 'PT45M' } });
  });

  it.each([Duration.seconds(30), Duration.hours(13)])('refuses a bootTimeout of %s', (bootTimeout) => {
    expect(() => synth({ bootTimeout })).toThrow(/TestStack\/Inference: bootTimeout .* is outside 1 minute to 12 hours/);
  });

  it('turns on termination protection when asked', () => {
    synth({ terminationProtection: true }).template.hasResourceProperties('AWS::EC2::Instance', { DisableApiTermination: true });
  });

  it('accepts an unlisted instance type with the escape hatch', () => {
    const { template } = synth({ instanceType: new ec2.InstanceType('p5.48xlarge'), allowUnlistedInstanceType: true });
    template.hasResourceProperties('AWS::EC2::Instance', { InstanceType: 'p5.48xlarge', EnclaveOptions: { Enabled: true } });
  });

  it('accepts a smaller root volume with your own AMI', () => {
    const { template } = synth({
      machineImage: ec2.MachineImage.genericLinux({ 'us-east-1': 'ami-0123456789abcdef0' }),
      rootVolumeSize: Size.gibibytes(40),
    });
    template.hasResourceProperties('AWS::EC2::Instance', { ImageId: 'ami-0123456789abcdef0' });
  });
});

describe('EnclaveGpuInstance validation', () => {
  it.each([
    ['t3.large', /instanceType 't3.large' is not a GPU instance type that supports Nitro Enclaves.*allowUnlistedInstanceType/],
    ['g4ad.xlarge', /instanceType 'g4ad.xlarge' is not a GPU instance type/],
    ['m5.2xlarge', /instanceType 'm5.2xlarge'/],
  ])('refuses %s', (type, message) => {
    expect(() => synth({ instanceType: new ec2.InstanceType(type) })).toThrow(message);
  });

  it('names the construct in the error', () => {
    expect(() => synth({ instanceType: new ec2.InstanceType('t3.large') })).toThrow(/^TestStack\/Inference: instanceType/);
  });

  it('refuses an instance type token without the escape hatch', () => {
    const { stack, vpc } = testStack();
    const type = new CfnParameter(stack, 'Type').valueAsString;
    expect(Token.isUnresolved(type)).toBe(true);
    expect(() => new EnclaveGpuInstance(stack, 'Inference', {
      vpc, instanceType: new ec2.InstanceType(type), enclaveImage: EnclaveImage.fromEifFile(eifPath),
    })).toThrow(/instanceType is a token and is not a GPU instance type/);
  });

  it.each([1, 3, 5])('refuses an odd enclave vCPU count (%i)', (cpuCount) => {
    expect(() => synth({ enclave: { cpuCount } })).toThrow(/enclave\.cpuCount must be even .* got \d/);
  });

  it('refuses, once and before anything needs them, an enclave image whose PCRs are not known at synth time', () => {
    class UnmeasuredImage extends EnclaveImage {
      public readonly pcrs = undefined;
      public bind(scope: Construct) {
        const { pcrs, ...rest } = EnclaveImage.fromEifFile(eifPath).bind(scope);
        void pcrs;
        return rest;
      }
    }
    const refused = /^TestStack\/Inference: enclaveImage has no known PCR0, PCR1 and PCR2, .*Use EnclaveImage\.fromEifFile\(\)/;
    // Not the key's, nor the observability's: one error, whatever else is set.
    expect(() => synth({ enclaveImage: new UnmeasuredImage() })).toThrow(refused);
    expect(() => synth({ enclaveImage: new UnmeasuredImage(), observability: false })).toThrow(refused);
  });

  it('refuses, at synth, a boot script above the 16 KB of user data EC2 accepts', () => {
    const { stack, vpc } = testStack();
    const construct = new EnclaveGpuInstance(stack, 'Inference', { vpc, enclaveImage: EnclaveImage.fromEifFile(eifPath) });
    construct.instance.userData.addCommands(`# ${'x'.repeat(8 * 1024)}`);
    expect(() => Template.fromStack(stack)).toThrow(/the boot script is about \d+ bytes, above the 16384 bytes of user data EC2 accepts/);
  });

  it('refuses an enclave that leaves the parent fewer than 2 vCPUs', () => {
    expect(() => synth({ instanceType: new ec2.InstanceType('g5.xlarge'), enclave: { cpuCount: 4 } }))
      .toThrow(/enclave\.cpuCount 4 leaves the parent instance fewer than 2 of its 4 vCPUs. Use at most 2/);
    expect(() => synth({ instanceType: new ec2.InstanceType('g5.xlarge'), enclave: { cpuCount: 2 } })).not.toThrow();
  });

  it.each([0, -2, 2.5, Number.NaN])('refuses a vCPU count that is not a positive whole number (%s)', (cpuCount) => {
    expect(() => synth({ enclave: { cpuCount } })).toThrow(/enclave\.cpuCount must be a whole number/);
  });

  it('refuses less than 64 MiB of enclave memory', () => {
    expect(() => synth({ enclave: { memoryMiB: 32 } })).toThrow(/enclave\.memoryMiB 32 is below the 64 MiB minimum. Use at least 64/);
  });

  it('refuses enclave memory below four times the image size', () => {
    const bigEif = writePlaceholderEif(40 * 1024 * 1024);
    expect(() => synth({ enclaveImage: EnclaveImage.fromEifFile(bigEif), enclave: { memoryMiB: 100 } }))
      .toThrow(/enclave\.memoryMiB 100 is below 4x the enclave image file's size, which nitro-cli requires. Use at least 161/);
  });

  it("refuses enclave memory that is not below the instance's memory", () => {
    expect(() => synth({ instanceType: new ec2.InstanceType('g5.xlarge'), enclave: { memoryMiB: 16384 } }))
      .toThrow(/enclave\.memoryMiB 16384 is not below the instance's 16384 MiB/);
  });

  it('refuses token enclave sizes, which are rendered into files at synth', () => {
    const { stack, vpc } = testStack();
    const memoryMiB = new CfnParameter(stack, 'Memory', { type: 'Number' }).valueAsNumber;
    expect(() => new EnclaveGpuInstance(stack, 'Inference', {
      vpc, enclave: { memoryMiB }, enclaveImage: EnclaveImage.fromEifFile(eifPath),
    })).toThrow(/enclave\.memoryMiB is a token/);
  });

  it('refuses a root volume smaller than the default AMI snapshot', () => {
    expect(() => synth({ rootVolumeSize: Size.gibibytes(50) })).toThrow(/rootVolumeSize 50 GiB is smaller than the default AMI's 75 GiB snapshot/);
  });

  it.each([[3, /enclaveCid must be a whole number from 4/], [1.5, /enclaveCid/]])('refuses enclaveCid %s', (enclaveCid, message) => {
    expect(() => synth({ enclaveCid })).toThrow(message);
  });

  it('refuses hibernation switched on through the L1 escape hatch', () => {
    const { app, stack, vpc } = testStack();
    const construct = new EnclaveGpuInstance(stack, 'Inference', { vpc, enclaveImage: EnclaveImage.fromEifFile(eifPath) });
    (construct.instance.node.defaultChild as ec2.CfnInstance).hibernationOptions = { configured: true };
    expect(() => app.synth()).toThrow(/hibernationOptions.configured is true: an instance with Nitro Enclaves enabled cannot hibernate/);
  });
});

describe('EnclaveImage.fromEifFile', () => {
  it('refuses a missing file', () => {
    expect(() => EnclaveImage.fromEifFile('/nonexistent/enclave.eif')).toThrow(/\/nonexistent\/enclave.eif does not exist. Build it with 'nitro-cli build-enclave'/);
  });

  it('refuses a directory', () => {
    expect(() => EnclaveImage.fromEifFile(__dirname)).toThrow(/is not a file/);
  });

  it('refuses a file that is not an EIF', () => {
    expect(() => EnclaveImage.fromEifFile(__filename)).toThrow(/it is not an enclave image file \(it does not start with '.eif'\)/);
  });

  it('computes the PCRs of the file', () => {
    const sections = typicalSections();
    expect(EnclaveImage.fromEifFile(writeEif(sections)).pcrs).toEqual(expectedPcrs(sections));
  });

  it('keeps expected PCRs that match the file, and adds PCR3 and PCR4 as given', () => {
    const sections = placeholderSections();
    const { pcr0 } = expectedPcrs(sections);
    const pcr3 = 'ab'.repeat(48);
    expect(EnclaveImage.fromEifFile(writeEif(sections), { pcrs: { pcr0, pcr3 } }).pcrs).toEqual({ ...expectedPcrs(sections), pcr3 });
  });

  it('refuses an expected PCR that the file does not measure', () => {
    expect(() => EnclaveImage.fromEifFile(eifPath, { pcrs: { pcr1: 'ab'.repeat(48) } }))
      .toThrow(/options.pcrs does not match .*: pcr1 abababababab\.\.\. but the file measures [0-9a-f]{12}\.\.\./);
    expect(() => EnclaveImage.fromEifFile(eifPath, { pcrs: { pcr8: 'ab'.repeat(48) } }))
      .toThrow(/pcr8 abababababab\.\.\. but the file is not signed/);
  });

  it('refuses a malformed EIF with the reason', () => {
    const truncated = writeTempFile(fs.readFileSync(eifPath).subarray(0, 560));
    expect(() => EnclaveImage.fromEifFile(truncated)).toThrow(/EifMeasurements.fromFile: .*: it is truncated/);
  });

  it.each([
    [{ pcr0: 'AB'.repeat(48) }, /pcr0 must be lower-case hex/],
    [{ pcr1: 'ab'.repeat(47) }, /pcr1 must be 96 hex characters \(a SHA-384 digest\), got 94/],
    [{ pcr2: 'zz'.repeat(48) }, /pcr2 contains characters that are not hex digits/],
  ])('refuses malformed PCRs %j', (pcrs, message) => {
    expect(() => EnclaveImage.fromEifFile(eifPath, { pcrs })).toThrow(message);
  });
});

describe('EnclaveGpuInstance attestation-bound key', () => {
  const keyStatements = (template: Template): any[] => {
    const keys = Object.values(template.findResources('AWS::KMS::Key'));
    expect(keys).toHaveLength(1);
    return keys[0].Properties.KeyPolicy.Statement;
  };
  /** The role's statement on the key, in its EnclaveKms policy. */
  const keyUse = (template: Template): any => Object.entries(template.findResources('AWS::IAM::Policy'))
    .filter(([id]) => id.startsWith('InferencePolicyEnclaveKms'))
    .flatMap(([, policy]) => policy.Properties.PolicyDocument.Statement)
    .find((statement) => statement.Sid === 'EnclaveKeyUse');
  const conditionsFor = (pcrs: Record<string, string>) => ({
    StringEqualsIgnoreCase: {
      'kms:RecipientAttestation:ImageSha384': pcrs.pcr0,
      'kms:RecipientAttestation:PCR1': pcrs.pcr1,
      'kms:RecipientAttestation:PCR2': pcrs.pcr2,
      ...(pcrs.pcr3 ? { 'kms:RecipientAttestation:PCR3': pcrs.pcr3 } : {}),
      ...(pcrs.pcr8 ? { 'kms:RecipientAttestation:PCR8': pcrs.pcr8 } : {}),
    },
  });
  const decryptCapable = (s: any) => [s.Action].flat().some((a: string) => /^kms:(\*|Decrypt|GenerateDataKey(Pair)?|DeriveSharedSecret|ReEncrypt)/.test(a) && a !== 'kms:GenerateDataKeyWithoutPlaintext');

  it("binds a new key to the image's PCRs and grants the instance role through it", () => {
    const sections = typicalSections();
    const { template, construct } = synth({ enclaveImage: EnclaveImage.fromEifFile(writeEif(sections)) });
    // The key policy names no principal but the account root (KMS refuses one it cannot see
    // yet, as a role created in the same deployment may be): the role's own policy grants.
    const statements = keyStatements(template);
    expect(statements.filter((s) => s.Effect === 'Allow' && decryptCapable(s) && !JSON.stringify(s.Principal).includes(':root'))).toEqual([]);
    const use = keyUse(template);
    expect(use.Action).toEqual(['kms:Decrypt', 'kms:GenerateDataKey']);
    expect(use.Resource).toEqual({ 'Fn::GetAtt': [expect.stringMatching(/^InferenceKey/), 'Arn'] });
    expect(use.Condition).toEqual(conditionsFor(expectedPcrs(sections)));
    expect(construct.key.pcrs).toEqual(expectedPcrs(sections));
    template.hasResourceProperties('AWS::KMS::Key', { EnableKeyRotation: true });
  });

  it("changes the key policy when the image's bytes change", () => {
    const a = synth({ enclaveImage: EnclaveImage.fromEifFile(writePlaceholderEif(16)) }).template;
    const b = synth({ enclaveImage: EnclaveImage.fromEifFile(writePlaceholderEif(17)) }).template;
    const deny = (template: Template) => keyStatements(template).find((s) => s.Sid === 'DenyWithoutImageSha384').Condition;
    expect(deny(b)).not.toEqual(deny(a));
    expect(keyUse(b).Condition).not.toEqual(keyUse(a).Condition);
    expect(keyUse(b).Condition).toEqual(conditionsFor(expectedPcrs(placeholderSections(17))));
  });

  it('refuses a role of another account than the stack\'s, naming both', () => {
    const { stack, vpc } = testStack();
    const role = iam.Role.fromRoleArn(stack, 'Elsewhere', 'arn:aws:iam::999999999999:role/inference-parent');
    expect(() => new EnclaveGpuInstance(stack, 'Inference', { vpc, role, enclaveImage: EnclaveImage.fromEifFile(eifPath) }))
      .toThrow("TestStack/Inference: role is of account 999999999999, the stack deploys to 123456789012. An instance profile needs a role of its own account: pass a role of the stack's account");
    expect(() => new EnclaveGpuFleet(stack, 'Fleet', { vpc, role, enclaveImage: EnclaveImage.fromEifFile(eifPath) })).toThrow(/role is of account 999999999999/);
  });

  it('adds PCR3 when the role is fixed', () => {
    const arn = 'arn:aws:iam::123456789012:role/inference-parent';
    const { stack, vpc } = testStack();
    const role = iam.Role.fromRoleArn(stack, 'Existing', arn);
    new EnclaveGpuInstance(stack, 'Inference', { vpc, role, enclaveImage: EnclaveImage.fromEifFile(eifPath) });
    const template = Template.fromStack(stack);
    const pcr3 = crypto.createHash('sha384').update(Buffer.concat([Buffer.alloc(48), Buffer.from(arn)])).digest('hex');
    expect(keyUse(template).Condition).toEqual(conditionsFor({ ...expectedPcrs(placeholderSections()), pcr3 }));
    template.hasResourceProperties('AWS::IAM::Policy', { Roles: ['inference-parent'], PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Sid: 'EnclaveKeyUse' })]) } });
  });

  it('uses a key you pass and grants the role on it', () => {
    const { stack, vpc } = testStack();
    const key = new attestation_kms.AttestationBoundKey(stack, 'Shared', { pcrs: EnclaveImage.fromEifFile(eifPath).pcrs! });
    const construct = new EnclaveGpuInstance(stack, 'Inference', { vpc, key, enclaveImage: EnclaveImage.fromEifFile(eifPath) });
    expect(construct.key).toBe(key);
    const template = Template.fromStack(stack);
    expect(keyUse(template).Resource).toEqual({ 'Fn::GetAtt': [expect.stringMatching(/^SharedKey/), 'Arn'] });
    expect(keyStatements(template).filter((s) => s.Sid?.startsWith('Enclave'))).toEqual([]); // the role is of the key's account

    // A role whose account cannot be told to be the key's (imported by ARN into a stack of no
    // fixed account) is allowed in the key policy as well: it exists already, and if it is of
    // another account, only the key policy can let it use the key.
    const agnostic = new Stack(new App(), 'Agnostic');
    const agnosticVpc = new ec2.Vpc(agnostic, 'Vpc', { maxAzs: 1, natGateways: 0, subnetConfiguration: [{ name: 'p', subnetType: ec2.SubnetType.PRIVATE_ISOLATED }] });
    const imported = iam.Role.fromRoleArn(agnostic, 'Parent', 'arn:aws:iam::111122223333:role/inference-parent');
    new EnclaveGpuInstance(agnostic, 'Inference', { vpc: agnosticVpc, vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_ISOLATED }, role: imported, enclaveImage: EnclaveImage.fromEifFile(eifPath) });
    const agnosticTemplate = Template.fromStack(agnostic);
    expect(keyStatements(agnosticTemplate).filter((s) => s.Sid?.startsWith('Enclave')).map((s) => [s.Sid, s.Principal])).toEqual([
      ['EnclaveDecrypt', { AWS: 'arn:aws:iam::111122223333:role/inference-parent' }],
      ['EnclaveGenerateDataKey', { AWS: 'arn:aws:iam::111122223333:role/inference-parent' }],
    ]);
    expect(keyUse(agnosticTemplate)).toMatchObject({ Resource: { 'Fn::GetAtt': [expect.stringMatching(/^InferenceKey/), 'Arn'] }, Condition: { StringEqualsIgnoreCase: expect.any(Object) } });
  });
});
