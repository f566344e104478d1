import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Tags, Validations } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { describe, expect, it } from 'vitest';
import { EnclaveGpuFleet, EnclaveGpuImage, EnclaveGpuImageProps, EnclaveGpuInstance, EnclaveImage } from '../lib';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { GpuRuntime } from '../lib';
import { HOST_PACKAGE_INSTALLS } from '../lib/enclave-gpu-instance/boot/host-packages';
import { runtimeCheckCommands } from '../lib/enclave-gpu-instance/boot/runtime-install';
import { writePlaceholderEif } from './helpers/eif';
import { hereDocument, runtimeInstallerOf, testStack, userDataOf } from './helpers/stack';

const eifPath = writePlaceholderEif();

function synth(props: EnclaveGpuImageProps = {}, tags: Record<string, string> = {}) {
  const { app, stack, vpc } = testStack();
  const image = new EnclaveGpuImage(stack, 'Ami', { vpc, ...props });
  for (const [key, value] of Object.entries(tags)) Tags.of(app).add(key, value);
  const template = Template.fromStack(stack);
  // The versions are resolved at synth, from the content and tags CloudFormation receives.
  const versions = { component: stack.resolve(image.componentVersion) as string, recipe: stack.resolve(image.recipeVersion) as string };
  return { app, stack, vpc, image, template, versions };
}

describe('EnclaveGpuImage', () => {
  const { template, image, versions } = synth();
  const [component] = Object.values(template.findResources('AWS::ImageBuilder::Component'));

  it('bakes the host packages with the very commands the boot script runs', () => {
    const document: string = component.Properties.Data;
    for (const install of HOST_PACKAGE_INSTALLS) {
      expect(document).toContain(JSON.stringify(install.command));
      expect(document).toContain(JSON.stringify(`rpm -q ${install.package}`));
    }
    expect(document).toMatch(/phases:\n {2}- name: build\n[\s\S]*action: ExecuteBash[\s\S]*- name: validate/);
    const { stack, vpc } = testStack();
    new EnclaveGpuInstance(stack, 'Inference', { vpc, enclaveImage: EnclaveImage.fromEifFile(eifPath) });
    const userData = userDataOf(Template.fromStack(stack));
    const boot = `${userData}\n${runtimeInstallerOf(userData)}`; // Node.js is installed by the runtime's install script
    for (const install of HOST_PACKAGE_INSTALLS) expect(boot).toContain(install.command);
  });

  it('installs the gpu-runtime with the install script the boot script fetches, on the same archive, and checks it', () => {
    const document: string = component.Properties.Data;
    const commands = (step: string) => {
      const block = new RegExp(`- name: ${step}\\n {8}action: ExecuteBash\\n {8}inputs:\\n {10}commands:\\n((?: {14}- ".*"\\n)+)`).exec(document);
      expect(block, step).not.toBeNull();
      return block![1].trimEnd().split('\n').map((line) => JSON.parse(line.trim().slice(2)) as string);
    };
    const { stack, vpc } = testStack();
    new EnclaveGpuInstance(stack, 'Inference', { vpc, enclaveImage: EnclaveImage.fromEifFile(eifPath) });
    const userData = userDataOf(Template.fromStack(stack));
    const install = commands('InstallGpuRuntime');
    expect(install[0]).toBe('set -euo pipefail');
    expect(install.slice(1)).toHaveLength(4); // install -d, the here-document, chmod, the run
    // The very install script the boot script fetches, run on the same archive (same stack environment, same runtime).
    const script = hereDocument(install.join('\n'), '/usr/local/libexec/enclave-gpu/install-runtime');
    expect(script).toBe(runtimeInstallerOf(userData));
    expect(script).toContain(`runtime_dir=/opt/enclave-gpu/runtime/${image.gpuRuntimeSha256}\n`);
    expect(install[4]).toMatch(/^\/usr\/local\/libexec\/enclave-gpu\/install-runtime 's3:\/\/cdk-hnb659fds-assets-123456789012-us-east-1\/[0-9a-f]{64}\.tar' us-east-1$/);
    expect(userData).toContain(`\n${install[4]}\n`);
    expect(commands('CheckGpuRuntime')).toEqual(['set -euo pipefail', ...runtimeCheckCommands(image.gpuRuntimeSha256)]);
  });

  it('changes the component version when the runtime changes, and only then', () => {
    const runtimeDir = (text: string) => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'egpu-runtime-'));
      fs.writeFileSync(path.join(dir, 'egpu.js'), text);
      return dir;
    };
    const a = synth({ gpuRuntime: GpuRuntime.fromDirectory(runtimeDir('console.log("a")')) });
    const sameAsA = synth({ gpuRuntime: GpuRuntime.fromDirectory(runtimeDir('console.log("a")')) });
    const b = synth({ gpuRuntime: GpuRuntime.fromDirectory(runtimeDir('console.log("b")')) });
    expect(sameAsA.image.gpuRuntimeSha256).toBe(a.image.gpuRuntimeSha256);
    expect(sameAsA.versions).toEqual(a.versions);
    expect(b.image.gpuRuntimeSha256).not.toBe(a.image.gpuRuntimeSha256);
    expect(b.versions.component).not.toBe(a.versions.component);
    expect(b.versions.recipe).not.toBe(a.versions.recipe);
  });

  it('changes both versions when tags change: CloudFormation replaces a component or recipe on a tag change, and a replacement needs a new version', () => {
    const plain = synth();
    const tagged = synth({}, { CostCenter: 'cc-42' });
    const [taggedComponent] = Object.values(tagged.template.findResources('AWS::ImageBuilder::Component'));
    expect(taggedComponent.Properties.Tags).toMatchObject({ CostCenter: 'cc-42', EnclaveGPU: 'true' });
    expect(taggedComponent.Properties.Version).toBe(tagged.versions.component);
    expect(tagged.versions.component).not.toBe(plain.versions.component);
    expect(tagged.versions.recipe).not.toBe(plain.versions.recipe);
    expect(synth({}, { CostCenter: 'cc-42' }).versions).toEqual(tagged.versions); // and stable from one synth to the next
  });

  it('versions the component and the recipe from their content', () => {
    expect(component.Properties).toMatchObject({ Platform: 'Linux', Version: versions.component });
    expect(versions.component).toMatch(/^1\.\d+\.\d+$/);
    template.hasResourceProperties('AWS::ImageBuilder::ImageRecipe', { Version: versions.recipe });
    const other = synth({ parentImageParameter: '/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-amazon-linux-2023/latest/ami-id-other' }).versions;
    expect(other.component).toBe(versions.component);
    expect(other.recipe).not.toBe(versions.recipe);
  });

  it('builds from the Deep Learning Base GPU AMI, read from its public SSM parameter at each build, with an encrypted root volume', () => {
    // Not a deploy-time parameter: a new base AMI must not change (and so replace) the recipe.
    const parameters = (template.toJSON().Parameters ?? {}) as Record<string, { Default?: string }>;
    expect(Object.values(parameters).map((p) => p.Default)).not.toContain(EnclaveGpuInstance.DEFAULT_MACHINE_IMAGE_PARAMETER);
    template.hasResourceProperties('AWS::ImageBuilder::ImageRecipe', {
      ParentImage: `ssm:${EnclaveGpuInstance.DEFAULT_MACHINE_IMAGE_PARAMETER}`,
      Components: [{ ComponentArn: { 'Fn::GetAtt': [Match.stringLikeRegexp('^AmiHostComponent'), 'Arn'] } }],
      BlockDeviceMappings: [{ DeviceName: '/dev/xvda', Ebs: { DeleteOnTermination: true, Encrypted: true, VolumeSize: 100, VolumeType: 'gp3' } }],
    });
  });

  it('builds on an IMDSv2-only instance that is terminated on failure, in the VPC, HTTPS out only', () => {
    template.hasResourceProperties('AWS::ImageBuilder::InfrastructureConfiguration', {
      InstanceTypes: ['m6i.large'],
      TerminateInstanceOnFailure: true,
      InstanceMetadataOptions: { HttpTokens: 'required' },
      SubnetId: { Ref: Match.stringLikeRegexp('^VpcPrivateSubnet1') },
    });
    template.hasResourceProperties('AWS::EC2::SecurityGroup', {
      GroupDescription: 'Enclave GPU AMI build: outbound HTTPS only',
      SecurityGroupEgress: [Match.objectLike({ IpProtocol: 'tcp', FromPort: 443, ToPort: 443 })],
    });
  });

  it("gives the build instance the two managed policies the Image Builder guide requires, and read access to the runtime object only", () => {
    template.hasResourceProperties('AWS::IAM::Role', {
      ManagedPolicyArns: [
        { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':iam::aws:policy/EC2InstanceProfileForImageBuilder']] },
        { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':iam::aws:policy/AmazonSSMManagedInstanceCore']] },
      ],
    });
    const policies = Object.values(template.findResources('AWS::IAM::Policy'));
    expect(policies).toHaveLength(1);
    const [statement] = policies[0].Properties.PolicyDocument.Statement;
    expect(policies[0].Properties.PolicyDocument.Statement).toHaveLength(1);
    expect(statement).toMatchObject({ Sid: 'ReadGpuRuntime', Effect: 'Allow', Action: 's3:GetObject' });
    const objectArn = JSON.stringify(statement.Resource);
    expect(objectArn).toMatch(/:s3:::cdk-hnb659fds-assets-123456789012-us-east-1\/[0-9a-f]{64}\.tar"/);
    expect(objectArn).not.toContain('*');
    const [imageResource] = Object.values(template.findResources('AWS::ImageBuilder::Image'));
    expect(imageResource.DependsOn).toEqual([expect.stringMatching(/^AmiReadGpuRuntime/)]);
  });

  it('builds the image at deployment, tests it, and names the AMI by build date', () => {
    template.hasResourceProperties('AWS::ImageBuilder::Image', {
      ImageRecipeArn: { 'Fn::GetAtt': [Match.stringLikeRegexp('^AmiRecipe'), 'Arn'] },
      ImageTestsConfiguration: { ImageTestsEnabled: true, TimeoutMinutes: 60 },
    });
    // CloudFormation's own casing (the property is raw JSON in aws-cdk-lib): with `name` and
    // `amiTags` CloudFormation refuses the extraneous keys, and the AMI goes untagged.
    template.hasResourceProperties('AWS::ImageBuilder::DistributionConfiguration', {
      Distributions: [{ Region: { Ref: 'AWS::Region' }, AmiDistributionConfiguration: Match.exact({ Name: 'enclave-gpu-{{ imagebuilder:buildDate }}', AmiTags: { EnclaveGPU: 'true' } }) }],
    });
    template.resourceCountIs('AWS::ImageBuilder::ImagePipeline', 0);
  });

  it('schedules a weekly rebuild when asked', () => {
    synth({ weeklyRebuild: true }).template.hasResourceProperties('AWS::ImageBuilder::ImagePipeline', {
      Schedule: { ScheduleExpression: 'cron(0 3 ? * sun *)', PipelineExecutionStartCondition: 'EXPRESSION_MATCH_AND_DEPENDENCY_UPDATES_AVAILABLE' },
      Status: 'ENABLED',
    });
  });

  it('is the machine image of a fleet: its launch template uses the baked AMI', () => {
    const { stack, vpc } = testStack();
    const image = new EnclaveGpuImage(stack, 'Ami', { vpc });
    new EnclaveGpuFleet(stack, 'Inference', { vpc, machineImage: image, enclaveImage: EnclaveImage.fromEifFile(eifPath) });
    Template.fromStack(stack).hasResourceProperties('AWS::EC2::LaunchTemplate', {
      LaunchTemplateData: Match.objectLike({ ImageId: { 'Fn::GetAtt': [Match.stringLikeRegexp('^AmiImage'), 'ImageId'] }, EnclaveOptions: { Enabled: true } }),
    });
  });

  it('is clean under cdk-nag AwsSolutions, the managed policies acknowledged with reasons', () => {
    const { app, stack, vpc } = testStack();
    Validations.of(vpc).acknowledge({ id: 'AwsSolutions-VPC7', reason: 'Test VPC.' });
    new EnclaveGpuImage(stack, 'Ami', { vpc, buildInstanceType: new ec2.InstanceType('c6i.large') });
    app.synth();
    expect(new AwsSolutionsChecks().validateScope(app).violations.map((v) => v.ruleName)).toEqual([]);
  });
});
