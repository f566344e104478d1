import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Validations } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { describe, expect, it } from 'vitest';
import { EnclaveGpuFleet, EnclaveGpuImage, EnclaveGpuImageProps, EnclaveGpuInstance, EnclaveImage } from '../lib';
import { HOST_PACKAGE_INSTALLS } from '../lib/enclave-gpu-instance/boot/host-packages';
import { writePlaceholderEif } from './helpers/eif';
import { testStack, userDataOf } from './helpers/stack';

const eifPath = writePlaceholderEif();

function synth(props: EnclaveGpuImageProps = {}) {
  const { app, stack, vpc } = testStack();
  const image = new EnclaveGpuImage(stack, 'Ami', { vpc, ...props });
  return { app, stack, vpc, image, template: Template.fromStack(stack) };
}

describe('EnclaveGpuImage', () => {
  const { template, image } = synth();
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
    for (const install of HOST_PACKAGE_INSTALLS) expect(userData).toContain(install.command);
  });

  it('versions the component and the recipe from their content', () => {
    expect(component.Properties).toMatchObject({ Platform: 'Linux', Version: image.componentVersion });
    expect(image.componentVersion).toMatch(/^1\.\d+\.\d+$/);
    template.hasResourceProperties('AWS::ImageBuilder::ImageRecipe', { Version: image.recipeVersion });
    const other = synth({ parentImageParameter: '/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-amazon-linux-2023/latest/ami-id-other' }).image;
    expect(other.componentVersion).toBe(image.componentVersion);
    expect(other.recipeVersion).not.toBe(image.recipeVersion);
  });

  it('builds from the Deep Learning Base GPU AMI, resolved from its public SSM parameter, with an encrypted root volume', () => {
    const parameters = template.toJSON().Parameters as Record<string, { Type: string; Default: string }>;
    const [name] = Object.entries(parameters).find(([, p]) => p.Default === EnclaveGpuInstance.DEFAULT_MACHINE_IMAGE_PARAMETER)!;
    template.hasResourceProperties('AWS::ImageBuilder::ImageRecipe', {
      ParentImage: { Ref: name },
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

  it("gives the build instance the two managed policies the Image Builder guide requires, and nothing else", () => {
    template.hasResourceProperties('AWS::IAM::Role', {
      ManagedPolicyArns: [
        { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':iam::aws:policy/EC2InstanceProfileForImageBuilder']] },
        { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':iam::aws:policy/AmazonSSMManagedInstanceCore']] },
      ],
    });
    template.resourceCountIs('AWS::IAM::Policy', 0);
  });

  it('builds the image at deployment, tests it, and names the AMI by build date', () => {
    template.hasResourceProperties('AWS::ImageBuilder::Image', {
      ImageRecipeArn: { 'Fn::GetAtt': [Match.stringLikeRegexp('^AmiRecipe'), 'Arn'] },
      ImageTestsConfiguration: { ImageTestsEnabled: true, TimeoutMinutes: 60 },
    });
    template.hasResourceProperties('AWS::ImageBuilder::DistributionConfiguration', {
      Distributions: [{ Region: { Ref: 'AWS::Region' }, AmiDistributionConfiguration: { name: 'enclave-gpu-{{ imagebuilder:buildDate }}', amiTags: { EnclaveGPU: 'true' } } }],
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
