import { execFileSync, spawn, spawnSync } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { App, Size, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { EnclaveGpuImage, EnclaveGpuInstance, EnclaveImage, GpuRuntime } from '../lib';
import { renderRuntimeInstaller, runtimeCheckCommands } from '../lib/enclave-gpu-instance/boot/runtime-install';
import { CONTEXT_ENV_PATH, MIN_ONNX_MEMORY_LIMIT_BYTES, SGS_CONFIG_PATH, renderContextService, renderSgsService } from '../lib/enclave-gpu-instance/boot/runtime-services';
import { INSTANCE_ID_PLACEHOLDER } from '../lib/enclave-gpu-instance/boot/sgs-config';
import { BUNDLED_RUNTIME_DIRECTORY, GPU_RUNTIME_DIRECTORY_CONTEXT, bundledGpuRuntime, tarArchive } from '../lib/enclave-gpu-instance/gpu-runtime';
import { RUNTIME_PACKAGE_JSON, RUNTIME_PACKAGE_LOCK } from '../lib/enclave-gpu-instance/runtime-lock.generated';
import { KERNEL_ATTESTATION_LOG_PATH } from '../lib/observability/metric-catalogue';
import { runtimeLock } from '../scripts/generate-runtime-lock';
import { writePlaceholderEif } from './helpers/eif';
import { FIXTURE_RUNTIME_DIR, hereDocument, runtimeInstallerOf, testStack, userDataOf } from './helpers/stack';
import { minProcessMemoryLimit } from '../assets/gpu-runtime/src/kernels/onnx-worker';
import { DEFAULT_ONNX_THREADS } from '../assets/gpu-runtime/src/kernels/onnx-runtime';

const ROOT = path.resolve(__dirname, '..');
const eifPath = writePlaceholderEif();

/** A runtime directory with an egpu.js of the given text (and an addon, and a file that is not shipped). */
function runtimeDir(egpu: string, addon = 'addon bytes'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'egpu-runtime-'));
  fs.writeFileSync(path.join(dir, 'egpu.js'), egpu);
  fs.writeFileSync(path.join(dir, 'aes_gcm.node'), addon);
  fs.writeFileSync(path.join(dir, 'notes.txt'), 'not part of the runtime');
  return dir;
}

/** The staged archive of a runtime, as the asset ships it. */
function stagedArchive(runtime: GpuRuntime): string {
  return path.join(os.tmpdir(), 'cdk-enclave-gpu-runtime', `${runtime.sha256}.tar`);
}

function instanceUserData(runtime?: GpuRuntime, props: { onnxWorkerThread?: boolean; onnxMemoryLimit?: Size } = {}): string {
  const { stack, vpc } = testStack();
  new EnclaveGpuInstance(stack, 'Inference', { vpc, enclaveImage: EnclaveImage.fromEifFile(eifPath), gpuRuntime: runtime, ...props });
  return userDataOf(Template.fromStack(stack));
}

describe('onnxMemoryLimit', () => {
  it('is refused below what the context\'s worker process needs, naming the prop', () => {
    expect(() => instanceUserData(undefined, { onnxMemoryLimit: Size.mebibytes(256) }))
      .toThrow(/TestStack\/Inference: onnxMemoryLimit 256 MiB is below the 1032 MiB the execution context's worker process needs before any model/);
  });

  it('has the floor the runtime enforces', () => {
    expect(MIN_ONNX_MEMORY_LIMIT_BYTES).toBe(minProcessMemoryLimit(DEFAULT_ONNX_THREADS)); // the constructs pass no --threads
  });
});

describe('GpuRuntime archive', () => {
  it('is a tar of egpu.js, the addons and the pinned package files, nothing else, with a content hash', () => {
    const runtime = GpuRuntime.fromDirectory(runtimeDir('console.log("v1")'));
    expect(runtime.sha256).toMatch(/^[0-9a-f]{64}$/);
    const archive = stagedArchive(runtime);
    expect(crypto.createHash('sha256').update(fs.readFileSync(archive)).digest('hex')).toBe(runtime.sha256);
    const listing = execFileSync('tar', ['-tvf', archive], { encoding: 'utf8' });
    expect(listing.trim().split('\n').map((line) => line.split(/\s+/).pop())).toEqual(['aes_gcm.node', 'egpu.js', 'package-lock.json', 'package.json']);
    expect(listing).toMatch(/^-rw-r--r-- 0\/0 .* 1980-01-01/m);
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'egpu-untar-'));
    execFileSync('tar', ['-xf', archive, '-C', out]);
    expect(fs.readFileSync(path.join(out, 'egpu.js'), 'utf8')).toBe('console.log("v1")');
    expect(JSON.parse(fs.readFileSync(path.join(out, 'package.json'), 'utf8'))).toEqual(RUNTIME_PACKAGE_JSON);
  });

  it('has the same hash for the same files and another for any change', () => {
    const a = GpuRuntime.fromDirectory(runtimeDir('console.log("v1")')).sha256;
    expect(GpuRuntime.fromDirectory(runtimeDir('console.log("v1")')).sha256).toBe(a);
    expect(GpuRuntime.fromDirectory(runtimeDir('console.log("v2")')).sha256).not.toBe(a);
    expect(GpuRuntime.fromDirectory(runtimeDir('console.log("v1")', 'other addon')).sha256).not.toBe(a);
  });

  it('pins onnxruntime-node to the version in package.json, with a lockfile that matches package-lock.json', () => {
    const rootPackage = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
    expect(RUNTIME_PACKAGE_JSON.dependencies).toEqual({ 'onnxruntime-node': rootPackage.devDependencies['onnxruntime-node'] });
    // Fails when package-lock.json moves on: run `npm run generate:runtime-lock`.
    expect({ packageJson: RUNTIME_PACKAGE_JSON, packageLock: RUNTIME_PACKAGE_LOCK }).toEqual(runtimeLock(ROOT));
    const packages = RUNTIME_PACKAGE_LOCK.packages as Record<string, { integrity?: string; dev?: boolean }>;
    for (const [at, entry] of Object.entries(packages).filter(([at]) => at !== '')) {
      expect(entry.integrity, at).toMatch(/^sha512-/);
      expect(entry.dev, at).toBeUndefined();
    }
  });

  it('writes byte-reproducible ustar headers that GNU tar reads back', () => {
    const archive = tarArchive([{ name: 'a.txt', data: Buffer.from('x'.repeat(700)) }]);
    expect(archive.length).toBe(512 + 1024 + 1024);
    expect(archive.equals(tarArchive([{ name: 'a.txt', data: Buffer.from('x'.repeat(700)) }]))).toBe(true);
    expect(() => tarArchive([{ name: '../evil', data: Buffer.alloc(0) }])).toThrow(/not a plain file name/);
  });

  it('refuses a directory without egpu.js, naming the path and the fix', () => {
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'egpu-empty-'));
    expect(() => GpuRuntime.fromDirectory(empty)).toThrow(`GpuRuntime.fromDirectory: ${path.join(empty, 'egpu.js')} does not exist. Pass a directory that holds egpu.js`);
  });

  it('names the bundled path and `npm run build:runtime` when the bundle is missing', () => {
    const missing = path.join(os.tmpdir(), 'no-such-package', 'assets', 'gpu-runtime', 'dist');
    expect(() => bundledGpuRuntime(missing)).toThrow(`GpuRuntime.fromBundledAsset: ${path.join(missing, 'egpu.js')} does not exist. Build it with \`npm run build:runtime\``);
    expect(BUNDLED_RUNTIME_DIRECTORY).toBe(path.join(ROOT, 'assets', 'gpu-runtime', 'dist'));
  });

  it('defaults to the app-wide directory in the context, else the bundled one', () => {
    const fixture = GpuRuntime.fromDirectory(FIXTURE_RUNTIME_DIR).sha256;
    expect(runtimeInstallerOf(instanceUserData())).toContain(`runtime_dir=/opt/enclave-gpu/runtime/${fixture}\n`);
    const app = new App({ context: { [GPU_RUNTIME_DIRECTORY_CONTEXT]: 42 } });
    const stack = new Stack(app, 'Bad', { env: { account: '123456789012', region: 'us-east-1' } });
    expect(() => new EnclaveGpuImage(stack, 'Ami')).toThrow(/context cdk-enclave-gpu:gpuRuntimeDirectory must be the path of a runtime directory, got 42/);
  });
});

describe('runtime on the instance', () => {
  const runtime = GpuRuntime.fromDirectory(runtimeDir('console.log("instance")'));
  const userData = instanceUserData(runtime);
  const installer = runtimeInstallerOf(userData);

  it('ships the archive and the install script as assets, checks the script\'s SHA-256 and runs it on the archive', () => {
    const lines = userData.split('\n');
    const at = lines.findIndex((line) => line.startsWith("aws s3 cp 's3://cdk-hnb659fds-assets-123456789012-us-east-1/") && line.includes(' /usr/local/libexec/enclave-gpu/install-runtime.new '));
    expect(at).toBeGreaterThan(0);
    const sha256 = crypto.createHash('sha256').update(installer).digest('hex');
    expect(lines.slice(at, at + 5)).toEqual([
      expect.stringMatching(/^aws s3 cp 's3:\/\/cdk-hnb659fds-assets-123456789012-us-east-1\/[0-9a-f]{64}\.sh' \/usr\/local\/libexec\/enclave-gpu\/install-runtime\.new --region us-east-1 --only-show-errors$/),
      `echo '${sha256}  /usr/local/libexec/enclave-gpu/install-runtime.new' | sha256sum --check --strict -`,
      'chmod 0755 /usr/local/libexec/enclave-gpu/install-runtime.new',
      'mv -f /usr/local/libexec/enclave-gpu/install-runtime.new /usr/local/libexec/enclave-gpu/install-runtime',
      expect.stringMatching(/^\/usr\/local\/libexec\/enclave-gpu\/install-runtime 's3:\/\/cdk-hnb659fds-assets-123456789012-us-east-1\/[0-9a-f]{64}\.tar' us-east-1$/),
    ]);
    expect(installer).toContain('aws s3 cp "$archive_url" "$staging/runtime.tar" --region "$archive_region" --only-show-errors');
    expect(installer).toContain(`echo "${runtime.sha256}  $staging/runtime.tar" | sha256sum --check --strict -`);
    expect(installer).toContain('test -x /usr/bin/node-24 || dnf install -y nodejs24\ntest -x /usr/bin/npm-24 || dnf install -y nodejs24-npm\n');
    expect(installer).toContain('npm-24 ci --omit=dev --ignore-scripts');
  });

  it('writes sgs.json and the context PCRs from the enclave image, and starts the runtime before the enclave', () => {
    const pcrs = EnclaveImage.fromEifFile(eifPath).pcrs!;
    const config = JSON.parse(hereDocument(userData, SGS_CONFIG_PATH));
    expect(config).toEqual({
      enclaveListen: 'vsock:4294967295:7410',
      context: 'unix:/run/enclave-gpu/context.sock',
      root: 'aws',
      allowlist: [{ pcr0: pcrs.pcr0, pcr1: pcrs.pcr1, pcr2: pcrs.pcr2, partition: 'default' }],
      health: 'tcp:127.0.0.1:7411',
      metrics: { enabled: true, region: '${AWS::Region}', instanceId: INSTANCE_ID_PLACEHOLDER },
      kernelAttestationLog: KERNEL_ATTESTATION_LOG_PATH,
    });
    expect(userData).toContain(`sed -i "s/${INSTANCE_ID_PLACEHOLDER}/$instance_id/" /etc/enclave-gpu/sgs.json\nchgrp egpu /etc/enclave-gpu/sgs.json`);
    expect(hereDocument(userData, CONTEXT_ENV_PATH)).toContain(`EGPU_CONTEXT_ARGS=--expect-pcr 0=${pcrs.pcr0} --expect-pcr 1=${pcrs.pcr1} --expect-pcr 2=${pcrs.pcr2}\n`);
    expect(hereDocument(instanceUserData(undefined, { onnxWorkerThread: true }), CONTEXT_ENV_PATH))
      .toContain(`EGPU_CONTEXT_ARGS=--expect-pcr 0=${pcrs.pcr0} --expect-pcr 1=${pcrs.pcr1} --expect-pcr 2=${pcrs.pcr2} --onnx-worker\n`);
    expect(hereDocument(instanceUserData(undefined, { onnxMemoryLimit: Size.gibibytes(6) }), CONTEXT_ENV_PATH))
      .toContain(`EGPU_CONTEXT_ARGS=--expect-pcr 0=${pcrs.pcr0} --expect-pcr 1=${pcrs.pcr1} --expect-pcr 2=${pcrs.pcr2} --onnx-memory-limit ${6 * 1024 ** 3}\n`);
    const order = ["\n/usr/local/libexec/enclave-gpu/install-runtime 's3://", 'systemctl restart nitro-enclaves-allocator.service', 'systemctl restart --no-block egpu-context.service egpu-sgs.service', 'enable --now enclave-gpu-enclave.service'].map((s) => userData.indexOf(s));
    expect(order.every((at) => at > 0)).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
    expect(hereDocument(userData, '/etc/systemd/system/enclave-gpu-enclave.service')).toContain('Wants=egpu-sgs.service nitro-enclaves-vsock-proxy.service network-online.target\nAfter=nitro-enclaves-allocator.service egpu-sgs.service nitro-enclaves-vsock-proxy.service network-online.target\n');
  });

  it('honours the SGS ports and leaves metrics off without observability', () => {
    const { stack, vpc } = testStack();
    new EnclaveGpuInstance(stack, 'Inference', { vpc, enclaveImage: EnclaveImage.fromEifFile(eifPath), sgsVsockPort: 9000, sgsHealthPort: 9001, observability: false });
    const script = userDataOf(Template.fromStack(stack));
    const config = JSON.parse(hereDocument(script, SGS_CONFIG_PATH));
    expect(config.enclaveListen).toBe('vsock:4294967295:9000');
    expect(config.health).toBe('tcp:127.0.0.1:9001');
    expect(config.metrics).toBeUndefined();
    expect(hereDocument(script, '/usr/local/libexec/enclave-gpu/health-check')).toContain('curl -sf --max-time 5 -o /dev/null http://127.0.0.1:9001/health || problem=');
  });

  it('refuses an SGS port that the KMS proxy already listens on', () => {
    const { stack, vpc } = testStack();
    expect(() => new EnclaveGpuInstance(stack, 'Inference', { vpc, enclaveImage: EnclaveImage.fromEifFile(eifPath), sgsVsockPort: 8000 }))
      .toThrow(/sgsVsockPort 8000 is also the kmsProxyVsockPort/);
  });

  it('runs both services unprivileged and sandboxed, SGS after the context', () => {
    const context = hereDocument(installer, '/etc/systemd/system/egpu-context.service', 'EGPU_UNIT_EOF');
    const sgs = hereDocument(installer, '/etc/systemd/system/egpu-sgs.service', 'EGPU_UNIT_EOF');
    expect(context).toBe(renderContextService());
    expect(sgs).toBe(renderSgsService());
    expect(context).toContain('ExecStart=/usr/bin/node-24 /opt/enclave-gpu/runtime/current/egpu.js context --listen unix:/run/enclave-gpu/context.sock --root aws $EGPU_CONTEXT_ARGS\n');
    expect(context).toContain('\nOOMPolicy=continue\n'); // the worker process's death to the OOM killer does not stop the unit
    expect(sgs).toContain('ExecStart=/usr/bin/node-24 /opt/enclave-gpu/runtime/current/egpu.js sgs --config /etc/enclave-gpu/sgs.json\n');
    expect(sgs).toContain('Requires=egpu-context.service\nAfter=egpu-context.service network-online.target\n');
    expect(sgs).toContain('LogsDirectory=enclave-gpu\n');
    expect(context).toContain('RuntimeDirectory=enclave-gpu\n');
    // The context's socket: group egpu (SGS) may connect, others may not (0770 under UMask 0007, in a 0750 directory).
    expect(context).toContain('RuntimeDirectoryMode=0750\n');
    expect(context).toContain('UMask=0007\n');
    for (const unit of [context, sgs]) {
      for (const directive of ['NoNewPrivileges=yes', 'ProtectSystem=strict', 'ProtectHome=yes', 'PrivateTmp=yes', 'CapabilityBoundingSet=\n']) {
        expect(unit).toContain(directive);
      }
    }
    expect(context).toContain('User=egpu-context\nGroup=egpu\n');
    expect(sgs).toContain('User=egpu-sgs\nGroup=egpu\n');
  });

  it('keeps the boot script within the 16 KB EC2 accepts, under 11 KiB (the README says so)', () => {
    expect(Buffer.byteLength(userData)).toBeLessThan(11 * 1024);
  });
});

const SYSTEMD_ANALYZE = spawnSync('systemd-analyze', ['--version']).status === 0;

describe('systemd', () => {
  it.skipIf(!SYSTEMD_ANALYZE)('accepts every directive of the runtime units (systemd-analyze verify)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'egpu-units-'));
    for (const [name, text] of [['egpu-context.service', renderContextService()], ['egpu-sgs.service', renderSgsService()]]) {
      fs.writeFileSync(path.join(dir, name), text);
    }
    const result = spawnSync('systemd-analyze', ['verify', '--man=no', path.join(dir, 'egpu-context.service'), path.join(dir, 'egpu-sgs.service')], { encoding: 'utf8' });
    const complaints = `${result.stdout}\n${result.stderr}`.split('\n')
      // This machine has neither Node 24's namespaced binary nor the runtime nor the users: only syntax is checked here.
      .filter((line) => /Unknown (key|section)|Failed to parse|Invalid|ignoring|Unknown lvalue/i.test(line));
    expect(complaints).toEqual([]);
  });
});

describe('install script, run in a sandbox', () => {
  /**
   * Runs the install script with its absolute paths moved under a temporary root and the
   * system commands (aws, dnf, useradd, npm-24, systemctl...) replaced by stubs that log
   * their calls; `aws s3 cp` copies `archive`.
   */
  function sandbox() {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'egpu-install-'));
    const bin = path.join(root, 'stub-bin');
    const log = path.join(root, 'calls.log');
    fs.mkdirSync(bin);
    const stub = (name: string, body = '') => fs.writeFileSync(path.join(bin, name), `#!/bin/bash\necho "${name} $*" >> ${log}\n${body}\n`, { mode: 0o755 });
    stub('aws', 'cp "$FAKE_ARCHIVE" "$4"');
    stub('curl', 'while [ $# -gt 0 ]; do if [ "$1" = -o ]; then cp "$FAKE_NUPKG" "$2"; fi; shift; done');
    stub('npm-24', 'mkdir -p node_modules/onnxruntime-node && echo "$*" > .npm-args');
    for (const name of ['dnf', 'groupadd', 'useradd', 'systemctl']) stub(name);
    stub('getent', 'exit 2');
    stub('id', 'exit 1');
    // The install script's arguments, as the boot script passes them: the archive's S3 URL and its region.
    const run = (script: string, archive: string, nupkg = '') => spawnSync('bash', ['-c', script, 'install-runtime', 's3://bucket/runtime.tar', 'us-east-1'], {
      encoding: 'utf8',
      env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, FAKE_ARCHIVE: archive, FAKE_NUPKG: nupkg },
    });
    const localise = (script: string) => script
      .replace(/\/opt\/enclave-gpu/g, `${root}/opt/enclave-gpu`)
      .replace(/\/etc\/systemd\/system/g, `${root}/etc/systemd/system`)
      .replace(/\/usr\/local\/bin/g, `${root}/usr/local/bin`);
    const calls = () => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : '');
    return { root, run, localise, calls };
  }

  const runtime = GpuRuntime.fromDirectory(runtimeDir('console.log("sandboxed")'));
  const settings = { s3Url: 's3://bucket/runtime.tar', sha256: runtime.sha256, region: 'us-east-1' };

  it('installs the checked archive into a directory named by its hash, links it, writes the units, and does nothing twice', () => {
    const box = sandbox();
    const script = box.localise(renderRuntimeInstaller(settings));
    const first = box.run(script, stagedArchive(runtime));
    expect(first.stderr).toBe('');
    expect(first.status).toBe(0);
    const installed = path.join(box.root, 'opt/enclave-gpu/runtime', runtime.sha256);
    expect(fs.readFileSync(path.join(installed, 'egpu.js'), 'utf8')).toBe('console.log("sandboxed")');
    expect(fs.existsSync(path.join(installed, '.installed'))).toBe(true);
    expect(fs.readFileSync(path.join(installed, '.npm-args'), 'utf8')).toMatch(/^ci --omit=dev --ignore-scripts --no-audit --no-fund --cache /);
    expect(fs.existsSync(path.join(installed, 'node_modules', 'onnxruntime-node'))).toBe(true);
    expect(fs.readlinkSync(path.join(box.root, 'opt/enclave-gpu/runtime/current'))).toBe(runtime.sha256);
    expect(fs.readdirSync(path.join(box.root, 'opt/enclave-gpu/runtime')).sort()).toEqual([runtime.sha256, 'current'].sort());
    expect(fs.readdirSync(path.join(box.root, 'etc/systemd/system')).sort()).toEqual(['egpu-context.service', 'egpu-sgs.service']);
    expect(fs.statSync(path.join(box.root, 'usr/local/bin/egpu')).mode & 0o777).toBe(0o755);
    const calls = box.calls();
    expect(calls).toContain('dnf install -y nodejs24\n');
    expect(calls).toContain('dnf install -y nodejs24-npm\n');
    expect(calls).toContain('groupadd --system egpu\n');
    expect(calls).toMatch(/useradd --system --gid egpu .* egpu-context\n/);
    expect(calls).toMatch(/useradd --system --gid egpu .* egpu-sgs\n/);
    expect(calls).toContain('aws s3 cp s3://bucket/runtime.tar');
    expect(calls).toContain('systemctl daemon-reload\n');
    expect(calls).not.toMatch(/systemctl (enable|start|restart)/);

    // A second run (a boot on an AMI that baked this runtime) downloads nothing.
    const second = box.run(script, stagedArchive(runtime));
    expect(second.status).toBe(0);
    expect(box.calls().match(/^aws /gm)).toHaveLength(1);
    expect(box.calls().match(/^npm-24 /gm)).toHaveLength(1);
  });

  it('refuses an archive whose SHA-256 differs, and leaves nothing behind', () => {
    const box = sandbox();
    const tampered = path.join(box.root, 'tampered.tar');
    fs.writeFileSync(tampered, Buffer.concat([fs.readFileSync(stagedArchive(runtime)), Buffer.from('x')]));
    const result = box.run(box.localise(renderRuntimeInstaller(settings)), tampered);
    expect(result.status).not.toBe(0);
    expect(result.stdout + result.stderr).toMatch(/FAILED/);
    expect(fs.readdirSync(path.join(box.root, 'opt/enclave-gpu/runtime'))).toEqual([]);
    expect(box.calls()).not.toContain('npm-24');
  });

  /** A stand-in for the CUDA provider package: a zip with the three libraries where the real one has them (and another file). */
  function fakeProviderPackage(dir: string): { file: string; sha512: string; libraries: Record<string, string> } {
    const libraries: Record<string, string> = {
      libonnxruntime_providers_cuda: 'cuda provider bytes',
      libonnxruntime_providers_shared: 'shared provider bytes',
      libonnxruntime_providers_tensorrt: 'tensorrt provider bytes',
    };
    const file = path.join(dir, 'provider.nupkg');
    const entries = Object.entries(libraries).map(([name, text]) => [`runtimes/linux-x64/native/${name}.so`, text]);
    entries.push(['Microsoft.ML.OnnxRuntime.Gpu.Linux.nuspec', '<package/>']);
    const made = spawnSync('python3', ['-c', 'import json, sys, zipfile\nwith zipfile.ZipFile(sys.argv[1], "w") as z:\n  [z.writestr(n, t) for n, t in json.loads(sys.argv[2])]', file, JSON.stringify(entries)], { encoding: 'utf8' });
    expect(made.status, made.stderr).toBe(0);
    return { file, sha512: crypto.createHash('sha512').update(fs.readFileSync(file)).digest('hex'), libraries };
  }

  it('installs the pinned CUDA provider package when asked: checked, its three libraries beside onnxruntime-node, once', () => {
    const box = sandbox();
    const provider = fakeProviderPackage(box.root);
    const withCuda = { ...settings, cudaProvider: { url: 'https://api.nuget.org/v3-flatcontainer/x/1/x.1.nupkg', sha512: provider.sha512 } };
    const script = box.localise(renderRuntimeInstaller(withCuda));
    const first = box.run(script, stagedArchive(runtime), provider.file);
    expect(first.stderr).toBe('');
    expect(first.status).toBe(0);
    const binaries = path.join(box.root, 'opt/enclave-gpu/runtime', runtime.sha256, 'node_modules/onnxruntime-node/bin/napi-v6/linux/x64');
    expect(fs.readdirSync(binaries).sort()).toEqual(Object.keys(provider.libraries).map((name) => `${name}.so`).sort());
    for (const [name, text] of Object.entries(provider.libraries)) {
      expect(fs.readFileSync(path.join(binaries, `${name}.so`), 'utf8')).toBe(text);
      expect(fs.statSync(path.join(binaries, `${name}.so`)).mode & 0o777).toBe(0o644);
    }
    expect(box.calls()).toContain("curl -fsS --proto =https --tlsv1.2 --retry 3 -o ");
    expect(fs.readdirSync(path.join(box.root, 'opt/enclave-gpu/runtime')).sort()).toEqual([runtime.sha256, 'current'].sort()); // no staging left
    const second = box.run(script, stagedArchive(runtime), provider.file);
    expect(second.status).toBe(0);
    expect(box.calls().match(/^curl /gm)).toHaveLength(1);
  });

  it('refuses a CUDA provider package whose SHA-512 differs: nothing of it installed, and the runtime not made current', () => {
    const box = sandbox();
    const provider = fakeProviderPackage(box.root);
    const withCuda = { ...settings, cudaProvider: { url: 'https://api.nuget.org/v3-flatcontainer/x/1/x.1.nupkg', sha512: 'ab'.repeat(64) } };
    const result = box.run(box.localise(renderRuntimeInstaller(withCuda)), stagedArchive(runtime), provider.file);
    expect(result.status).not.toBe(0);
    expect(result.stdout + result.stderr).toMatch(/FAILED/);
    const installed = path.join(box.root, 'opt/enclave-gpu/runtime', runtime.sha256);
    expect(fs.existsSync(path.join(installed, 'node_modules/onnxruntime-node/bin'))).toBe(false);
    expect(fs.readdirSync(installed).filter((name) => name.startsWith('.cuda-provider'))).toEqual([]);
    expect(fs.existsSync(path.join(box.root, 'opt/enclave-gpu/runtime/current'))).toBe(false);
    expect(fs.readdirSync(path.join(box.root, 'opt/enclave-gpu/runtime')).filter((name) => name.startsWith('.staging'))).toEqual([]);
  });

  it('checks what it installed: the runtime checks pass on the sandbox after an install, and fail before', () => {
    const [marker, link] = runtimeCheckCommands(runtime.sha256);
    expect(marker).toBe(`test -e /opt/enclave-gpu/runtime/${runtime.sha256}/.installed`);
    expect(link).toBe(`test "$(readlink /opt/enclave-gpu/runtime/current)" = ${runtime.sha256}`);
    const box = sandbox();
    const checks = box.localise([marker, link].join(' && '));
    expect(box.run(checks, '').status).not.toBe(0);
    expect(box.run(box.localise(renderRuntimeInstaller(settings)), stagedArchive(runtime)).status).toBe(0);
    expect(box.run(checks, '').status).toBe(0);
  });
});

describe('onnxruntime CUDA provider (opt-in, pinned by SHA-512)', () => {
  const directory = runtimeDir('console.log("cuda")');
  const sha512 = crypto.createHash('sha512').update('a provider package').digest();
  const url = 'https://api.nuget.org/v3-flatcontainer/microsoft.ml.onnxruntime.gpu.linux/1.30.0/microsoft.ml.onnxruntime.gpu.linux.1.30.0.nupkg';

  it('warns when it is pinned with onnxMemoryLimit, which it has not run under', () => {
    const warnings = (runtime: GpuRuntime, limit?: Size) => {
      const { stack, vpc } = testStack();
      new EnclaveGpuInstance(stack, 'Inference', { vpc, enclaveImage: EnclaveImage.fromEifFile(eifPath), gpuRuntime: runtime, onnxMemoryLimit: limit });
      return Annotations.fromStack(stack).findWarning('*', Match.stringLikeRegexp('onnxMemoryLimit bounds host memory only, and the CUDA provider has not yet run under it'));
    };
    const cuda = GpuRuntime.fromDirectory(directory, { onnxCudaProviderSha512: sha512.toString('hex') });
    expect(warnings(cuda, Size.gibibytes(4))).toHaveLength(1);
    expect(warnings(cuda)).toHaveLength(0);
    expect(warnings(GpuRuntime.fromDirectory(directory), Size.gibibytes(4))).toHaveLength(0);
  });

  it('is not installed by default: no download, nothing from NuGet', () => {
    const installer = runtimeInstallerOf(instanceUserData(GpuRuntime.fromDirectory(directory)));
    expect(installer).not.toContain('nuget');
    expect(installer).not.toContain('curl');
  });

  it.each([['hex', sha512.toString('hex')], ['NuGet base64', sha512.toString('base64')]])('downloads the package of the pinned onnxruntime version and checks it against a SHA-512 given in %s', (_, given) => {
    const runtime = GpuRuntime.fromDirectory(directory, { onnxCudaProviderSha512: given });
    const installer = runtimeInstallerOf(instanceUserData(runtime));
    expect((RUNTIME_PACKAGE_LOCK.packages as Record<string, { version: string }>)['node_modules/onnxruntime-node'].version).toBe('1.30.0');
    expect(installer).toContain(`-o "$cuda_staging/provider.nupkg" '${url}'\n`);
    expect(installer).toContain(`echo "${sha512.toString('hex')}  $cuda_staging/provider.nupkg" | sha512sum --check --strict -\n`);
    expect(runtime.sha256).toBe(GpuRuntime.fromDirectory(directory).sha256); // the archive is the same; the install script differs
  });

  it.each(['', 'ab'.repeat(63), 'not a hash', sha512.toString('base64').slice(0, 80)])('refuses onnxCudaProviderSha512 %j, naming it', (given) => {
    expect(() => GpuRuntime.fromDirectory(directory, { onnxCudaProviderSha512: given })).toThrow(/GpuRuntime.fromDirectory: onnxCudaProviderSha512 must be a SHA-512: 128 hex characters, or the 88-character base64 NuGet publishes as packageHash/);
  });

  it('gives the AMI component a new version and a check of the provider', () => {
    const image = (runtime: GpuRuntime) => {
      const { stack } = testStack();
      const ami = new EnclaveGpuImage(stack, 'Ami', { gpuRuntime: runtime });
      const template = Template.fromStack(stack);
      return { ami, template, componentVersion: stack.resolve(ami.componentVersion) as string };
    };
    const plain = image(GpuRuntime.fromDirectory(directory));
    const cuda = image(GpuRuntime.fromDirectory(directory, { onnxCudaProviderSha512: sha512.toString('hex') }));
    expect(cuda.componentVersion).toMatch(/^1\.\d+\.\d+$/);
    expect(cuda.componentVersion).not.toBe(plain.componentVersion);
    const data = Object.values(cuda.template.findResources('AWS::ImageBuilder::Component'))[0].Properties.Data as string;
    expect(data).toContain(`[ \\"$(uname -m)\\" != x86_64 ] || test -e /opt/enclave-gpu/runtime/${cuda.ami.gpuRuntimeSha256}/.cuda-provider-${sha512.toString('hex').slice(0, 32)}`);
  });
});

const DIST_EGPU = path.join(BUNDLED_RUNTIME_DIRECTORY, 'egpu.js');
const DIST_MISSING = !fs.existsSync(DIST_EGPU);

describe('the real runtime accepts what the constructs render', () => {
  // The bundle is a build output (`npm run build:runtime`); without it these are skipped, and CI builds it first.
  const userData = instanceUserData();

  it.skipIf(DIST_MISSING)('egpu sgs --check accepts the rendered sgs.json (assets/gpu-runtime/dist/egpu.js)', () => {
    // What CloudFormation and the boot script substitute on the instance.
    const config = hereDocument(userData, SGS_CONFIG_PATH)
      .replace('${AWS::Region}', 'us-east-1')
      .replace(INSTANCE_ID_PLACEHOLDER, 'i-0123456789abcdef0');
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'egpu-sgs-')), 'sgs.json');
    fs.writeFileSync(file, config);
    const result = spawnSync(process.execPath, [DIST_EGPU, 'sgs', '--check', '--config', file], { encoding: 'utf8', timeout: 30_000 });
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    // VMADDR_CID_ANY, which newer runtimes print as 'any'.
    expect(result.stdout).toMatch(/enclave link {6}vsock:(4294967295|any):7410\n/);
    expect(result.stdout).toContain('context           unix:/run/enclave-gpu/context.sock');
    expect(result.stdout).toContain('allowlist         1 image(s)');
    expect(result.stdout).toContain('health            http://127.0.0.1:7411/health');
    expect(result.stdout).toContain('InstanceId i-0123456789abcdef0');
    expect(result.stdout).toContain(`kernel log        ${KERNEL_ATTESTATION_LOG_PATH}`);
  });

  it.skipIf(DIST_MISSING).each([
    ['the default arguments', userData, ''],
    ['onnxWorkerThread', instanceUserData(undefined, { onnxWorkerThread: true }), ', in a worker thread'],
    ['onnxMemoryLimit', instanceUserData(undefined, { onnxMemoryLimit: Size.gibibytes(2) }), `, in a worker process limited to ${2 * 1024 ** 3} bytes`],
  ])('egpu context starts with the rendered arguments (%s) and stops on SIGTERM', async (_, rendered, onnxPlace) => {
    const env = hereDocument(rendered, CONTEXT_ENV_PATH);
    const args = /^EGPU_CONTEXT_ARGS=(.*)$/m.exec(env)![1].split(/\s+/);
    const socket = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'egpu-ctx-')), 'context.sock');
    const child = spawn(process.execPath, [DIST_EGPU, 'context', '--listen', `unix:${socket}`, '--root', 'aws', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`context did not start: ${stderr}`)), 30_000);
      child.stderr!.on('data', (chunk) => {
        stderr += chunk;
        // The command's own ready line, printed once its SIGTERM handler is about to be in place.
        if (/listening on .*, pid \d+\n/.test(stderr)) { clearTimeout(timer); setTimeout(resolve, 200); }
      });
      child.once('exit', () => { clearTimeout(timer); reject(new Error(`context exited: ${stderr}`)); });
    });
    expect(stderr).toContain(`egpu context: listening on unix:${socket} (onnxruntime `);
    expect(stderr).toMatch(new RegExp(`\\(onnxruntime \\w+, 1 thread${onnxPlace}\\), pid`));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  });
});

const OBJDUMP = spawnSync('objdump', ['--version']).status === 0;

describe('native addons of the bundled runtime', () => {
  const addons = DIST_MISSING ? [] : fs.readdirSync(BUNDLED_RUNTIME_DIRECTORY).filter((name) => name.endsWith('.node'));

  it.skipIf(DIST_MISSING || !OBJDUMP)('need no newer glibc than Amazon Linux 2023 has (2.34)', () => {
    for (const addon of addons) {
      const symbols = execFileSync('objdump', ['-T', path.join(BUNDLED_RUNTIME_DIRECTORY, addon)], { encoding: 'utf8' });
      const versions = [...symbols.matchAll(/GLIBC_(\d+)\.(\d+)/g)].map(([, major, minor]) => Number(major) * 1000 + Number(minor));
      expect(Math.max(0, ...versions), `${addon} needs glibc ${Math.floor(Math.max(...versions) / 1000)}.${Math.max(...versions) % 1000}`).toBeLessThanOrEqual(2034);
    }
  });
});
