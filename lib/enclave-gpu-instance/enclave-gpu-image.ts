import * as crypto from 'crypto';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as imagebuilder from 'aws-cdk-lib/aws-imagebuilder';
import { Aws, Lazy, Stack, Tags, Validations } from 'aws-cdk-lib';
import { Construct } from 'constructs';
import { httpsOnlySecurityGroup } from './https-only-security-group';
import { HOST_PACKAGE_INSTALLS, NODE_MAJOR } from './boot/host-packages';
import { RuntimeArchiveLocation, RuntimeInstallerSettings, runtimeCheckCommands, runtimeInstallCommands } from './boot/runtime-install';
import { DEFAULT_MACHINE_IMAGE_PARAMETER } from './enclave-host';
import { GpuRuntime, defaultGpuRuntime } from './gpu-runtime';

/**
 * Properties of an {@link EnclaveGpuImage}.
 */
export interface EnclaveGpuImageProps {
  /**
   * The VPC the build instance runs in. It needs outbound HTTPS (package repositories,
   * Systems Manager, Image Builder). With a VPC given, the build instance gets a security
   * group that allows outbound HTTPS only; without, Image Builder uses the default VPC's
   * default security group.
   *
   * @default - the region's default VPC
   */
  readonly vpc?: ec2.IVpc;

  /**
   * Where in the VPC the build instance runs.
   *
   * @default - private subnets with egress
   */
  readonly vpcSubnets?: ec2.SubnetSelection;

  /**
   * The instance type that builds the image. Building needs no GPU.
   *
   * @default m6i.large
   */
  readonly buildInstanceType?: ec2.InstanceType;

  /**
   * The public SSM parameter of the base AMI (Amazon Linux 2023 with the NVIDIA driver).
   * Image Builder reads it when each build starts, so every build (the weekly rebuild too)
   * starts from the AMI it names at that moment.
   *
   * @default - the AWS Deep Learning Base OSS Nvidia Driver GPU AMI (Amazon Linux 2023), x86_64
   */
  readonly parentImageParameter?: string;

  /**
   * Rebuild every Sunday at 03:00 UTC when the base image or the components have updates,
   * for patching. The AMI the stack deploys stays the one built at deployment; point new
   * instances at a rebuilt AMI by deploying again.
   *
   * @default false
   */
  readonly weeklyRebuild?: boolean;

  /**
   * The gpu-runtime baked into the image, by the install script the instances run at boot.
   * Give instances launched from the image the same runtime (the default on both sides), and
   * their boot-time install finds it in place.
   *
   * @default GpuRuntime.fromBundledAsset() - the runtime built into this package
   */
  readonly gpuRuntime?: GpuRuntime;
}

/**
 * An AMI for enclave GPU parents, baked by EC2 Image Builder at deployment: the base GPU AMI
 * plus the Nitro Enclaves CLI, the CloudWatch agent, Node.js 24 and the gpu-runtime (SGS and
 * the execution context, with their systemd units), installed by the same commands and the
 * same install script the boot script runs (so a baked instance skips them). Use it as the
 * `machineImage` of an `EnclaveGpuInstance` or `EnclaveGpuFleet`.
 *
 * Component and recipe versions are derived from their content as deployed (the document,
 * with the runtime's location and SHA-256, and the tags), so every change makes a new
 * version (CloudFormation replaces a component or recipe on any change, and a replacement
 * under the same name and version fails) and a new image. A change of tags alone (say
 * `Tags.of(app).add(...)`) therefore rebuilds the image too.
 */
export class EnclaveGpuImage extends Construct implements ec2.IMachineImage {
  /** The id of the AMI built at deployment. */
  public readonly imageId: string;

  /** The version of the host component, derived from its content and tags (resolved at synth). */
  public readonly componentVersion: string;

  /** The version of the image recipe, derived from its content and tags (resolved at synth). */
  public readonly recipeVersion: string;

  /** The image, built when the stack deploys. */
  public readonly image: imagebuilder.CfnImage;

  /** The weekly pipeline, when `weeklyRebuild` is set. */
  public readonly pipeline?: imagebuilder.CfnImagePipeline;

  /** SHA-256 of the gpu-runtime archive baked into the image. */
  public readonly gpuRuntimeSha256: string;

  constructor(scope: Construct, id: string, props: EnclaveGpuImageProps = {}) {
    super(scope, id);
    const runtime = (props.gpuRuntime ?? defaultGpuRuntime(this)).bind(this);
    this.gpuRuntimeSha256 = runtime.sha256;
    const installer = { sha256: runtime.sha256, cudaProvider: runtime.onnxCudaProvider };
    const stack = Stack.of(this);
    const componentDocument = renderHostComponent(installer, { s3Url: runtime.bucket.s3UrlForObject(runtime.objectKey), region: stack.region });
    // Versions come from what CloudFormation receives, resolved once tags are applied (their
    // tokens' text is not stable between synths; their resolved form is): every property of
    // a component or recipe, tags included, replaces it on change, and a replacement needs a
    // new version.
    const contentVersion = (content: () => unknown) => Lazy.string({ produce: () => versionOf(JSON.stringify(stack.resolve(content()))) });
    this.componentVersion = contentVersion(() => ({ data: componentDocument, description: COMPONENT_DESCRIPTION, tags: component.tags.renderTags() }));
    const component = new imagebuilder.CfnComponent(this, 'HostComponent', {
      name: `${this.node.addr}-enclave-gpu-host`,
      platform: 'Linux',
      version: this.componentVersion,
      data: componentDocument,
      description: COMPONENT_DESCRIPTION,
    });

    const parentImageParameter = props.parentImageParameter ?? DEFAULT_MACHINE_IMAGE_PARAMETER;
    // Image Builder reads the parameter when each build starts (an `ssm:` parent image): the
    // recipe stays the same resource when AWS publishes a new base AMI (a recipe cannot be
    // updated in place, and a replacement under the same name and version would fail), and
    // every build, the weekly rebuild included, starts from the latest one.
    const parentImage = `ssm:${parentImageParameter}`;
    const rootVolume = { deviceName: '/dev/xvda', ebs: { volumeSize: 100, volumeType: 'gp3', encrypted: true, deleteOnTermination: true } };
    this.recipeVersion = contentVersion(() => ({ component: this.componentVersion, parentImage, rootVolume, tags: recipe.tags.renderTags() }));
    const recipe = new imagebuilder.CfnImageRecipe(this, 'Recipe', {
      name: `${this.node.addr}-enclave-gpu`,
      version: this.recipeVersion,
      parentImage,
      components: [{ componentArn: component.attrArn }],
      blockDeviceMappings: [rootVolume],
    });

    const role = new iam.Role(this, 'BuildRole', {
      assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com'),
      description: 'Build instance of the enclave GPU AMI (cdk-enclave-gpu)',
      // The two policies the EC2 Image Builder User Guide requires of a build instance's profile.
      managedPolicies: [
        iam.ManagedPolicy.fromAwsManagedPolicyName('EC2InstanceProfileForImageBuilder'),
        iam.ManagedPolicy.fromAwsManagedPolicyName('AmazonSSMManagedInstanceCore'),
      ],
    });
    acknowledgeManagedPolicies(role, ['EC2InstanceProfileForImageBuilder', 'AmazonSSMManagedInstanceCore']);
    // The component downloads the runtime archive: this one object, nothing else of the bucket.
    const readRuntime = new iam.Policy(this, 'ReadGpuRuntime', {
      roles: [role],
      statements: [new iam.PolicyStatement({
        sid: 'ReadGpuRuntime',
        actions: ['s3:GetObject'],
        resources: [runtime.bucket.arnForObjects(runtime.objectKey)],
      })],
    });
    const profile = new iam.InstanceProfile(this, 'BuildInstanceProfile', { role });

    const securityGroup = props.vpc ? httpsOnlySecurityGroup(this, 'BuildSecurityGroup', props.vpc, 'Enclave GPU AMI build: outbound HTTPS only', 'package repositories, Systems Manager, Image Builder and S3') : undefined;
    const subnetId = props.vpc ? props.vpc.selectSubnets(props.vpcSubnets ?? { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS }).subnetIds[0] : undefined;
    const infrastructure = new imagebuilder.CfnInfrastructureConfiguration(this, 'Infrastructure', {
      name: `${this.node.addr}-enclave-gpu`,
      instanceProfileName: profile.instanceProfileName,
      instanceTypes: [(props.buildInstanceType ?? new ec2.InstanceType('m6i.large')).toString()],
      terminateInstanceOnFailure: true,
      instanceMetadataOptions: { httpTokens: 'required' },
      subnetId,
      securityGroupIds: securityGroup ? [securityGroup.securityGroupId] : undefined,
    });
    infrastructure.node.addDependency(profile);

    const distribution = new imagebuilder.CfnDistributionConfiguration(this, 'Distribution', {
      name: `${this.node.addr}-enclave-gpu`,
      distributions: [{
        region: Aws.REGION,
        // Typed `any` in aws-cdk-lib, so written as CloudFormation's own JSON: CDK does not
        // turn camelCase keys into CloudFormation's PascalCase here (aws/aws-cdk#26912).
        amiDistributionConfiguration: { Name: 'enclave-gpu-{{ imagebuilder:buildDate }}', AmiTags: { EnclaveGPU: 'true' } },
      }],
    });

    this.image = new imagebuilder.CfnImage(this, 'Image', {
      imageRecipeArn: recipe.attrArn,
      infrastructureConfigurationArn: infrastructure.attrArn,
      distributionConfigurationArn: distribution.attrArn,
      imageTestsConfiguration: { imageTestsEnabled: true, timeoutMinutes: 60 },
    });
    this.image.node.addDependency(readRuntime);
    this.imageId = this.image.attrImageId;

    if (props.weeklyRebuild) {
      this.pipeline = new imagebuilder.CfnImagePipeline(this, 'WeeklyRebuild', {
        name: `${this.node.addr}-enclave-gpu`,
        imageRecipeArn: recipe.attrArn,
        infrastructureConfigurationArn: infrastructure.attrArn,
        distributionConfigurationArn: distribution.attrArn,
        schedule: { scheduleExpression: 'cron(0 3 ? * sun *)', pipelineExecutionStartCondition: 'EXPRESSION_MATCH_AND_DEPENDENCY_UPDATES_AVAILABLE' },
        status: 'ENABLED',
      });
    }
    Tags.of(this).add('EnclaveGPU', 'true');
  }

  /** The baked AMI, for `machineImage` props. */
  public getImage(_scope: Construct): ec2.MachineImageConfig {
    return { imageId: this.imageId, osType: ec2.OperatingSystemType.LINUX, userData: ec2.UserData.forLinux() };
  }
}

const COMPONENT_DESCRIPTION = `Nitro Enclaves CLI, CloudWatch agent, Node.js ${NODE_MAJOR} and the gpu-runtime for enclave GPU parents (cdk-enclave-gpu)`;

/**
 * The Image Builder component document: install the host packages, then the runtime with
 * the very install script the boot script fetches (carried inline here), on the same
 * archive; check both.
 */
function renderHostComponent(runtime: RuntimeInstallerSettings, archive: RuntimeArchiveLocation): string {
  const yamlList = (lines: string[]) => lines.map((line) => `              - ${JSON.stringify(line)}`).join('\n');
  return [
    'name: enclave-gpu-host',
    `description: ${COMPONENT_DESCRIPTION}`,
    'schemaVersion: 1.0',
    'phases:',
    '  - name: build',
    '    steps:',
    '      - name: InstallHostPackages',
    '        action: ExecuteBash',
    '        inputs:',
    '          commands:',
    yamlList(['set -euo pipefail', ...HOST_PACKAGE_INSTALLS.map((p) => p.command)]),
    '      - name: InstallGpuRuntime',
    '        action: ExecuteBash',
    '        inputs:',
    '          commands:',
    yamlList(['set -euo pipefail', ...runtimeInstallCommands(runtime, archive)]),
    '  - name: validate',
    '    steps:',
    '      - name: CheckHostPackages',
    '        action: ExecuteBash',
    '        inputs:',
    '          commands:',
    yamlList(['set -euo pipefail', ...HOST_PACKAGE_INSTALLS.map((p) => `rpm -q ${p.package}`)]),
    '      - name: CheckGpuRuntime',
    '        action: ExecuteBash',
    '        inputs:',
    '          commands:',
    yamlList(['set -euo pipefail', ...runtimeCheckCommands(runtime.sha256, runtime.cudaProvider)]),
    '',
  ].join('\n');
}

/** A semantic version from content: 1.<first 24 bits>.<next 24 bits> of its SHA-256. */
function versionOf(content: string): string {
  const hash = crypto.createHash('sha256').update(content).digest();
  return `1.${hash.readUIntBE(0, 3)}.${hash.readUIntBE(3, 3)}`;
}

/**
 * cdk-nag reports an AWS managed policy as `AwsSolutions-IAM4[Policy::<arn>]`; aws-cdk-lib
 * 2.257's Validations.acknowledge() refuses ids with a second '::' (the ARN has one), so the
 * acknowledgement is recorded in the same metadata entry acknowledge() writes, which cdk-nag reads.
 */
function acknowledgeManagedPolicies(role: iam.Role, names: string[]): void {
  const entries = Object.fromEntries(names.map((name) => [
    `AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/${name}]`,
    `The EC2 Image Builder User Guide requires ${name} on the build instance's profile; the role is used only by the short-lived build instance.`,
  ]));
  role.node.addMetadata(Validations.ACKNOWLEDGED_RULES_METADATA_KEY, entries);
}
