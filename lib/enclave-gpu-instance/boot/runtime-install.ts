import type { OnnxCudaProviderPackage } from '../gpu-runtime';
import { NODE_EXECUTABLE, NODE_MAJOR, NPM_COMMAND, installCommand } from './host-packages';
import { CheckedS3Object, dirname, s3CopyCommand, sha256CheckCommand, shellQuote, writeFileCommands } from './boot-script';
import {
  CONTEXT_SERVICE,
  CONTEXT_USER,
  EGPU_ENTRY,
  RUNTIME_CURRENT,
  RUNTIME_GROUP,
  RUNTIME_ROOT,
  SGS_SERVICE,
  SGS_USER,
  renderContextService,
  renderSgsService,
} from './runtime-services';

/** Where the install script is written, on the AMI build instance and on every parent instance. */
export const RUNTIME_INSTALLER_PATH = '/usr/local/libexec/enclave-gpu/install-runtime';

/** A command-line wrapper, so an operator can run `egpu sgs --config ... --check` on the instance. */
export const EGPU_WRAPPER_PATH = '/usr/local/bin/egpu';

/** The delimiter of the here-document that carries the install script in the AMI build's component. */
const INSTALLER_DELIMITER = 'ENCLAVE_GPU_EOF';
/** The delimiter of the here-documents inside the install script. */
const UNIT_DELIMITER = 'EGPU_UNIT_EOF';

/** The Node.js packages of Amazon Linux 2023 the runtime runs on (host-packages.ts NODE_MAJOR). */
export const NODE_PACKAGES = [`nodejs${NODE_MAJOR}`, `nodejs${NODE_MAJOR}-npm`];

/** What the install script is rendered from: nothing deploy-time, so it can ship as a file asset. */
export interface RuntimeInstallerSettings {
  /** The runtime archive's SHA-256, checked after download; the install directory's name. */
  readonly sha256: string;
  /** onnxruntime's CUDA provider package to install beside onnxruntime-node, pinned by SHA-512. */
  readonly cudaProvider?: OnnxCudaProviderPackage;
}

/** Where the runtime archive is (the install script's arguments; may hold deploy-time tokens). */
export interface RuntimeArchiveLocation {
  readonly s3Url: string;
  /** The region of the bucket. */
  readonly region: string;
}

/** The delimiter of the Python program that unpacks the CUDA provider package. */
const PYTHON_DELIMITER = 'EGPU_PY_EOF';

/** Where onnxruntime-node looks for its provider libraries (onnxruntime-node's install metadata). */
const ORT_BINARY_DIR = 'node_modules/onnxruntime-node/bin/napi-v6/linux/x64';

/** The provider libraries the package carries (runtimes/linux-x64/native/ in it), as onnxruntime-node's install script takes them. */
const CUDA_PROVIDER_LIBRARIES = ['libonnxruntime_providers_cuda.so', 'libonnxruntime_providers_shared.so', 'libonnxruntime_providers_tensorrt.so'];

/** The marker of an installed CUDA provider package, named by its SHA-512 (a prefix). */
function cudaMarker(runtimeDir: string, sha512: string): string {
  return `${runtimeDir}/.cuda-provider-${sha512.slice(0, 32)}`;
}

/**
 * Installs the CUDA provider package once per runtime directory and package: downloaded over
 * HTTPS, refused unless its SHA-512 is the pinned one, its three libraries written beside
 * onnxruntime-node's binding. Nothing of it is used unverified; x86_64 only (the package has
 * no other Linux libraries).
 */
function cudaProviderLines(runtimeDir: string, provider: OnnxCudaProviderPackage): string[] {
  if (!/^[0-9a-f]{128}$/.test(provider.sha512)) throw new Error(`CUDA provider sha512 must be 128 lower-case hex characters, got '${provider.sha512}'`);
  const marker = cudaMarker(runtimeDir, provider.sha512);
  return [
    'if [ "$(uname -m)" != x86_64 ]; then',
    '  echo "onnxruntime\'s CUDA provider package has no $(uname -m) libraries: onnx.run uses the CPU provider" >&2',
    `elif [ ! -e ${marker} ]; then`,
    `  cuda_staging=$(mktemp -d ${RUNTIME_ROOT}/.staging.XXXXXX)`,
    `  curl -fsS --proto '=https' --tlsv1.2 --retry 3 -o "$cuda_staging/provider.nupkg" ${shellQuote(provider.url)}`,
    `  echo "${provider.sha512}  $cuda_staging/provider.nupkg" | sha512sum --check --strict -`,
    `  python3 - "$cuda_staging/provider.nupkg" "$runtime_dir/${ORT_BINARY_DIR}" <<'${PYTHON_DELIMITER}'`,
    'import os, shutil, sys, zipfile',
    'package, target = sys.argv[1], sys.argv[2]',
    'os.makedirs(target, exist_ok=True)',
    'with zipfile.ZipFile(package) as archive:',
    `    for name in (${CUDA_PROVIDER_LIBRARIES.map((name) => `'${name}'`).join(', ')}):`,
    '        partial = os.path.join(target, name + ".partial")',
    '        with archive.open("runtimes/linux-x64/native/" + name) as source, open(partial, "wb") as out:',
    '            shutil.copyfileobj(source, out)',
    '        os.chmod(partial, 0o644)',
    '        os.replace(partial, os.path.join(target, name))',
    PYTHON_DELIMITER,
    `  touch ${marker}`,
    'fi',
  ];
}

/**
 * The install script of the runtime: Node.js (NODE_MAJOR) from the distribution, the system users,
 * the archive from S3 (checked against its SHA-256, unpacked to
 * `/opt/enclave-gpu/runtime/<sha256>`, its pinned dependencies installed with `npm ci`, no
 * install scripts run, so nothing is installed that the lockfile's hashes do not cover), the
 * `current` link, the systemd units and the `egpu` wrapper. Its arguments: the archive's S3
 * URL and the bucket's region.
 *
 * One script for the AMI build (EnclaveGpuImage's component) and the boot script: on an
 * instance of an AMI that baked the same runtime, everything it would download is there and
 * it only rewrites the units and the link. The units are installed but not started: they
 * need the configuration the boot script writes.
 */
export function renderRuntimeInstaller(settings: RuntimeInstallerSettings): string {
  if (!/^[0-9a-f]{64}$/.test(settings.sha256)) throw new Error(`runtime sha256 must be 64 lower-case hex characters, got '${settings.sha256}'`);
  const runtimeDir = `${RUNTIME_ROOT}/${settings.sha256}`;
  return [
    '#!/bin/bash',
    '# Rendered by cdk-enclave-gpu: installs the enclave GPU runtime (SGS and the execution context).',
    '# The same script runs in the AMI build (EnclaveGpuImage) and at boot; where this runtime is',
    '# installed already it only rewrites the units and the link.',
    'set -euo pipefail',
    'archive_url=${1:?usage: install-runtime ARCHIVE_S3_URL REGION}',
    'archive_region=${2:?usage: install-runtime ARCHIVE_S3_URL REGION}',
    `runtime_dir=${runtimeDir}`,
    ...NODE_PACKAGES.map(installCommand),
    `getent group ${RUNTIME_GROUP} >/dev/null || groupadd --system ${RUNTIME_GROUP}`,
    ...[CONTEXT_USER, SGS_USER].map((user) => `id -u ${user} >/dev/null 2>&1 || useradd --system --gid ${RUNTIME_GROUP} --no-create-home --home-dir / --shell /sbin/nologin ${user}`),
    // Others may traverse /opt/enclave-gpu (to the runtime) but not list it.
    `install -d -m 0711 ${dirname(RUNTIME_ROOT)}`,
    `install -d -m 0755 ${RUNTIME_ROOT}`,
    'staging=""',
    'cuda_staging=""',
    'trap \'rm -rf ${staging:+"$staging"} ${cuda_staging:+"$cuda_staging"}\' EXIT',
    'if [ ! -e "$runtime_dir/.installed" ]; then',
    `  staging=$(mktemp -d ${RUNTIME_ROOT}/.staging.XXXXXX)`,
    '  aws s3 cp "$archive_url" "$staging/runtime.tar" --region "$archive_region" --only-show-errors',
    `  echo "${settings.sha256}  $staging/runtime.tar" | sha256sum --check --strict -`,
    '  install -d -m 0755 "$staging/runtime"',
    '  tar -xf "$staging/runtime.tar" -C "$staging/runtime" --no-same-owner',
    // The lockfile pins onnxruntime-node and its dependencies with their integrity hashes, and
    // no dependency's install script runs: onnxruntime-node's would fetch its CUDA provider
    // libraries from NuGet with no integrity check, into the process that holds plaintext.
    `  (cd "$staging/runtime" && ${NPM_COMMAND} ci --omit=dev --ignore-scripts --no-audit --no-fund --cache "$staging/npm-cache")`,
    '  touch "$staging/runtime/.installed"',
    '  rm -rf "$runtime_dir"',
    '  mv "$staging/runtime" "$runtime_dir"',
    'fi',
    ...(settings.cudaProvider ? cudaProviderLines(runtimeDir, settings.cudaProvider) : []),
    `ln -sfn "$(basename "$runtime_dir")" ${RUNTIME_CURRENT}.new`,
    `mv -Tf ${RUNTIME_CURRENT}.new ${RUNTIME_CURRENT}`,
    ...writeFileCommands({ path: `/etc/systemd/system/${CONTEXT_SERVICE}`, content: renderContextService(), mode: '0644' }, UNIT_DELIMITER),
    ...writeFileCommands({ path: `/etc/systemd/system/${SGS_SERVICE}`, content: renderSgsService(), mode: '0644' }, UNIT_DELIMITER),
    ...writeFileCommands({ path: EGPU_WRAPPER_PATH, content: `#!/bin/sh\nexec ${NODE_EXECUTABLE} ${EGPU_ENTRY} "$@"\n`, mode: '0755' }, UNIT_DELIMITER),
    'systemctl daemon-reload',
    'echo "enclave GPU runtime $(basename "$runtime_dir") installed"',
    '',
  ].join('\n');
}

/**
 * The commands that write the install script and run it, for the AMI build's component
 * (Image Builder components are not limited to user data's 16 KB).
 */
export function runtimeInstallCommands(installer: RuntimeInstallerSettings, archive: RuntimeArchiveLocation): string[] {
  return [
    ...writeFileCommands({ path: RUNTIME_INSTALLER_PATH, content: renderRuntimeInstaller(installer), mode: '0755' }, INSTALLER_DELIMITER),
    runInstallerCommand(archive),
  ];
}

/** Runs the install script on the archive. */
function runInstallerCommand(archive: RuntimeArchiveLocation): string {
  return `${RUNTIME_INSTALLER_PATH} ${shellQuote(archive.s3Url)} ${archive.region}`;
}

/**
 * The boot script's commands that fetch the install script (a file asset: about 4 to 6 KB
 * of user data saved), check its SHA-256, and run it on the archive.
 */
export function runtimeInstallerDownloadCommands(installer: CheckedS3Object, archive: RuntimeArchiveLocation): string[] {
  return [
    `install -d -m 0755 ${dirname(RUNTIME_INSTALLER_PATH)}`,
    // Checked before it replaces anything (an AMI may have baked this script).
    s3CopyCommand(installer, `${RUNTIME_INSTALLER_PATH}.new`),
    sha256CheckCommand(installer, `${RUNTIME_INSTALLER_PATH}.new`),
    `chmod 0755 ${RUNTIME_INSTALLER_PATH}.new`,
    `mv -f ${RUNTIME_INSTALLER_PATH}.new ${RUNTIME_INSTALLER_PATH}`,
    runInstallerCommand(archive),
  ];
}

/** The commands that check an installed runtime: its marker (and the CUDA provider's), and that the bundle starts. */
export function runtimeCheckCommands(sha256: string, cudaProvider?: OnnxCudaProviderPackage): string[] {
  return [
    `test -e ${RUNTIME_ROOT}/${sha256}/.installed`,
    ...(cudaProvider ? [`[ "$(uname -m)" != x86_64 ] || test -e ${cudaMarker(`${RUNTIME_ROOT}/${sha256}`, cudaProvider.sha512)}`] : []),
    `test "$(readlink ${RUNTIME_CURRENT})" = ${sha256}`,
    `${NODE_EXECUTABLE} ${EGPU_ENTRY} --help >/dev/null`,
  ];
}
