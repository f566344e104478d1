import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { DescribeInstanceTypesCommand, EC2Client, InstanceTypeInfo } from '@aws-sdk/client-ec2';
import { mockClient } from 'aws-sdk-client-mock';
import { describe, it, expect, beforeEach } from 'vitest';
import type { GpuInstanceTypeInfo } from '../lib/enclave-gpu-instance/gpu-instance-type';
import { GPU_ENCLAVE_INSTANCE_TYPES } from '../lib/enclave-gpu-instance/instance-types.generated';
import {
  fetchGpuEnclaveInstanceTypes,
  renderCatalogue,
  toGpuInstanceTypeInfo,
} from '../scripts/refresh-instance-types';

const ec2Mock = mockClient(EC2Client);

function instanceType(overrides: Partial<InstanceTypeInfo>): InstanceTypeInfo {
  return {
    InstanceType: 'g5.xlarge',
    NitroEnclavesSupport: 'supported',
    BareMetal: false,
    ProcessorInfo: { SupportedArchitectures: ['x86_64'] },
    VCpuInfo: { DefaultVCpus: 4, DefaultThreadsPerCore: 2 },
    MemoryInfo: { SizeInMiB: 16384 },
    GpuInfo: { Gpus: [{ Manufacturer: 'NVIDIA', Name: 'A10G', Count: 1 }] },
    ...overrides,
  };
}

const G5_XLARGE = instanceType({});
const G5G_XLARGE = instanceType({
  InstanceType: 'g5g.xlarge',
  ProcessorInfo: { SupportedArchitectures: ['arm64'] },
  VCpuInfo: { DefaultVCpus: 4, DefaultThreadsPerCore: 1 },
  MemoryInfo: { SizeInMiB: 8192 },
  GpuInfo: { Gpus: [{ Manufacturer: 'NVIDIA', Name: 'T4g', Count: 1 }] },
});
const M5_XLARGE = instanceType({ InstanceType: 'm5.xlarge', GpuInfo: undefined });
const P3_2XLARGE_UNSUPPORTED = instanceType({ InstanceType: 'p3.2xlarge', NitroEnclavesSupport: 'unsupported' });
const G4DN_METAL = instanceType({ InstanceType: 'g4dn.metal', BareMetal: true });

function entry(overrides: Partial<GpuInstanceTypeInfo>): GpuInstanceTypeInfo {
  return {
    vCpus: 4,
    threadsPerCore: 2,
    memoryMiB: 16384,
    architecture: 'x86_64',
    gpuCount: 1,
    gpu: 'NVIDIA A10G',
    ...overrides,
  };
}

beforeEach(() => {
  ec2Mock.reset();
});

describe('toGpuInstanceTypeInfo', () => {
  it('maps a supported x86_64 GPU type', () => {
    expect(toGpuInstanceTypeInfo(G5_XLARGE)).toEqual(entry({}));
  });

  it('sums GPU counts and names the first GPU', () => {
    const info = instanceType({
      GpuInfo: {
        Gpus: [
          { Manufacturer: 'NVIDIA', Name: 'L4', Count: 4 },
          { Manufacturer: 'NVIDIA', Name: 'L4', Count: 4 },
        ],
      },
    });
    expect(toGpuInstanceTypeInfo(info)).toMatchObject({ gpuCount: 8, gpu: 'NVIDIA L4' });
  });

  it('defaults threadsPerCore to 1', () => {
    const info = instanceType({ VCpuInfo: { DefaultVCpus: 4 } });
    expect(toGpuInstanceTypeInfo(info)?.threadsPerCore).toBe(1);
  });

  it.each([
    ['no GPU', M5_XLARGE],
    ['an empty GPU list', instanceType({ GpuInfo: { Gpus: [] } })],
    ['zero GPUs', instanceType({ GpuInfo: { Gpus: [{ Manufacturer: 'NVIDIA', Name: 'A10G', Count: 0 }] } })],
    ['Nitro Enclaves unsupported', P3_2XLARGE_UNSUPPORTED],
    ['Nitro Enclaves support absent', instanceType({ NitroEnclavesSupport: undefined })],
    ['bare metal', G4DN_METAL],
    ['an unsupported architecture', instanceType({ ProcessorInfo: { SupportedArchitectures: ['x86_64_mac'] } })],
    ['no architecture', instanceType({ ProcessorInfo: {} })],
    ['no vCPU count', instanceType({ VCpuInfo: { DefaultThreadsPerCore: 2 } })],
    ['no memory size', instanceType({ MemoryInfo: {} })],
  ])('rejects a type with %s', (_reason, info) => {
    expect(toGpuInstanceTypeInfo(info)).toBeUndefined();
  });
});

describe('fetchGpuEnclaveInstanceTypes', () => {
  beforeEach(() => {
    ec2Mock
      .on(DescribeInstanceTypesCommand)
      .resolvesOnce({ InstanceTypes: [G5_XLARGE, M5_XLARGE, P3_2XLARGE_UNSUPPORTED], NextToken: 'page-2' })
      .resolvesOnce({ InstanceTypes: [G4DN_METAL, G5G_XLARGE] });
  });

  it('keeps only the GPU types that support enclaves, across pages', async () => {
    const entries = await fetchGpuEnclaveInstanceTypes(new EC2Client({ region: 'us-east-1' }));
    expect(entries).toEqual({
      'g5.xlarge': entry({}),
      'g5g.xlarge': entry({ threadsPerCore: 1, memoryMiB: 8192, architecture: 'arm64', gpu: 'NVIDIA T4g' }),
    });
  });

  it('asks EC2 for virtualized types with Nitro Enclaves support and follows NextToken', async () => {
    await fetchGpuEnclaveInstanceTypes(new EC2Client({ region: 'us-east-1' }));
    const calls = ec2Mock.commandCalls(DescribeInstanceTypesCommand);
    expect(calls).toHaveLength(2);
    expect(calls[0].args[0].input.Filters).toEqual([
      { Name: 'nitro-enclaves-support', Values: ['supported'] },
      { Name: 'bare-metal', Values: ['false'] },
    ]);
    expect(calls[1].args[0].input.NextToken).toBe('page-2');
  });

  it('reports each page with the number of types kept so far', async () => {
    const pages: Array<[number, number]> = [];
    await fetchGpuEnclaveInstanceTypes(new EC2Client({ region: 'us-east-1' }), (page, kept) => pages.push([page, kept]));
    expect(pages).toEqual([
      [1, 1],
      [2, 2],
    ]);
  });

  it('propagates an EC2 failure', async () => {
    ec2Mock.reset();
    ec2Mock.on(DescribeInstanceTypesCommand).rejects(new Error('Could not load credentials from any providers'));
    await expect(fetchGpuEnclaveInstanceTypes(new EC2Client({ region: 'us-east-1' }))).rejects.toThrow(
      'Could not load credentials from any providers',
    );
  });
});

describe('renderCatalogue', () => {
  const header = { source: 'unit test', generatedOn: '2026-01-02' };
  const entries: Record<string, GpuInstanceTypeInfo> = {
    'g6.12xlarge': entry({ vCpus: 48, gpuCount: 4, gpu: 'NVIDIA L4' }),
    'g5.2xlarge': entry({ vCpus: 8 }),
    'g6.xlarge': entry({ gpu: 'NVIDIA L4' }),
    'g5.xlarge': entry({}),
    'g6e.xlarge': entry({ gpu: 'NVIDIA L40S' }),
    'g6.2xlarge': entry({ vCpus: 8, gpu: 'NVIDIA L4' }),
  };

  function renderedTypes(source: string): string[] {
    return [...source.matchAll(/^ {2}'([^']+)': /gm)].map((match) => match[1]);
  }

  it('sorts by family, then by vCPUs rather than by name', () => {
    expect(renderedTypes(renderCatalogue(entries, header))).toEqual([
      'g5.xlarge',
      'g5.2xlarge',
      'g6.xlarge',
      'g6.2xlarge',
      'g6.12xlarge',
      'g6e.xlarge',
    ]);
  });

  it('breaks a vCPU tie within a family by name', () => {
    const tied = { 'g5.b': entry({}), 'g5.a': entry({}) };
    expect(renderedTypes(renderCatalogue(tied, header))).toEqual(['g5.a', 'g5.b']);
  });

  it('renders the header, import and one line per type', () => {
    const source = renderCatalogue({ 'g5.xlarge': entry({}) }, header);
    expect(source).toBe(
      [
        '// Generated by scripts/refresh-instance-types.ts (`npm run refresh-instance-types`). Do not edit by hand.',
        '// Source: unit test',
        '// Generated on: 2026-01-02',
        '',
        "import type { GpuInstanceTypeInfo } from './gpu-instance-type';",
        '',
        'export const GPU_ENCLAVE_INSTANCE_TYPES: Readonly<Record<string, GpuInstanceTypeInfo>> = {',
        "  'g5.xlarge': { vCpus: 4, threadsPerCore: 2, memoryMiB: 16384, architecture: 'x86_64', gpuCount: 1, gpu: 'NVIDIA A10G' },",
        '};',
        '',
      ].join('\n'),
    );
  });

  it('does not depend on the order of its input', () => {
    const reversed = Object.fromEntries(Object.entries(entries).reverse());
    expect(renderCatalogue(reversed, header)).toBe(renderCatalogue(entries, header));
  });

  it('escapes quotes and backslashes in strings', () => {
    const source = renderCatalogue({ "x'y.z": entry({ gpu: "Vendor's \\GPU" }) }, header);
    expect(source).toContain(`  'x\\'y.z': `);
    expect(source).toContain(`gpu: 'Vendor\\'s \\\\GPU' }`);
  });
});

describe('the checked-in catalogue', () => {
  const file = path.join(__dirname, '..', 'lib', 'enclave-gpu-instance', 'instance-types.generated.ts');

  function headerLine(text: string, label: string): string {
    const match = text.match(new RegExp(`^// ${label}: (.*)$`, 'm'));
    if (!match) {
      throw new Error(`${file} has no "${label}:" header line`);
    }
    return match[1];
  }

  it('is exactly what the generator renders for its own entries', () => {
    const text = readFileSync(file, 'utf8');
    const header = { source: headerLine(text, 'Source'), generatedOn: headerLine(text, 'Generated on') };
    expect(renderCatalogue(GPU_ENCLAVE_INSTANCE_TYPES, header)).toBe(text);
  });
});
