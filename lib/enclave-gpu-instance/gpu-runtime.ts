import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as s3_assets from 'aws-cdk-lib/aws-s3-assets';
import { Construct } from 'constructs';
import { RUNTIME_PACKAGE_JSON, RUNTIME_PACKAGE_LOCK } from './runtime-lock.generated';

/**
 * The gpu-runtime as an instance receives it, once bound to a scope.
 */
export interface GpuRuntimeConfig {
  /** The bucket that holds the runtime archive. */
  readonly bucket: s3.IBucket;

  /** The key of the runtime archive (a tar file) in `bucket`. */
  readonly objectKey: string;

  /** SHA-256 of the archive, in lower-case hex: checked on the instance, and the name of its install directory. */
  readonly sha256: string;

  /**
   * The onnxruntime CUDA provider package to install beside the runtime, checked against
   * its SHA-512; none when the runtime was built without one.
   */
  readonly onnxCudaProvider?: OnnxCudaProviderPackage;
}

/**
 * A NuGet package of onnxruntime's CUDA execution provider, pinned by its SHA-512.
 */
export interface OnnxCudaProviderPackage {
  /** The package's download URL (api.nuget.org). */
  readonly url: string;

  /** Its SHA-512, in lower-case hex. */
  readonly sha512: string;
}

/**
 * Options of a {@link GpuRuntime}.
 */
export interface GpuRuntimeOptions {
  /**
   * SHA-512 of the `Microsoft.ML.OnnxRuntime.Gpu.Linux` NuGet package of the onnxruntime
   * version the runtime pins (1.30.0): 128 hex characters, or the 88-character base64 that
   * NuGet publishes as its `packageHash`. With it, the install script downloads that package
   * from api.nuget.org, refuses it unless it has this SHA-512, and installs the CUDA
   * execution provider libraries it carries beside onnxruntime-node (x86_64 only), so
   * `onnx.run` runs on the GPU. The instances (and the AMI build) then need HTTPS access to
   * api.nuget.org.
   *
   * Check the value yourself: download the package and compute it, or compare it with the
   * `packageHash` in NuGet's catalog. The runtime never installs it unverified.
   *
   * @default - no CUDA provider: `onnx.run` uses onnxruntime's CPU provider
   */
  readonly onnxCudaProviderSha512?: string;
}

/**
 * The runtime an enclave parent runs next to its enclave: SGS (the Secure GPU Scheduler) and
 * the execution context, both from the `egpu` bundle of `assets/gpu-runtime/`.
 *
 * It ships as one tar archive (a CDK file asset): the bundle `egpu.js`, its native addons
 * (`*.node`), and a `package.json` with a lockfile that pins `onnxruntime-node`, which the
 * bundle loads at run time and `npm ci` installs on the instance. The archive is built the
 * same way from the same files every time, so its SHA-256 is a content hash: the instance
 * checks the download against it, installs into `/opt/enclave-gpu/runtime/<sha256>`, and an
 * `EnclaveGpuImage` derives its component version from it.
 */
export abstract class GpuRuntime {
  /**
   * The runtime bundled with this library (`assets/gpu-runtime/dist`, built by
   * `npm run build:runtime`).
   *
   * An app can point every construct that uses the default at another directory with the
   * context key `cdk-enclave-gpu:gpuRuntimeDirectory` (for example in tests).
   */
  public static fromBundledAsset(options: GpuRuntimeOptions = {}): GpuRuntime {
    return bundledGpuRuntime(BUNDLED_RUNTIME_DIRECTORY, options);
  }

  /**
   * A runtime built elsewhere: a directory holding `egpu.js` and any native addons
   * (`*.node`) beside it, the layout of `assets/gpu-runtime/dist`. Other files are ignored.
   *
   * @param directory path to the directory
   * @param options the CUDA provider to install beside it
   */
  public static fromDirectory(directory: string, options: GpuRuntimeOptions = {}): GpuRuntime {
    return new DirectoryRuntime(path.resolve(directory), 'GpuRuntime.fromDirectory', 'Pass a directory that holds egpu.js (build it with `npm run build:runtime`)', options);
  }

  /** SHA-256 of the runtime archive, in lower-case hex: changes whenever any file in it changes. */
  public abstract readonly sha256: string;

  /**
   * Binds the runtime to a construct: creates the asset that delivers it to instances.
   */
  public abstract bind(scope: Construct): GpuRuntimeConfig;
}

/** The context key that replaces the bundled runtime directory for `GpuRuntime.fromBundledAsset()` users in an app. */
export const GPU_RUNTIME_DIRECTORY_CONTEXT = 'cdk-enclave-gpu:gpuRuntimeDirectory';

/**
 * `assets/gpu-runtime/dist` of this package: lib/enclave-gpu-instance/*.ts and
 * out/enclave-gpu-instance/*.js are both two levels below the package root.
 */
export const BUNDLED_RUNTIME_DIRECTORY = path.join(__dirname, '..', '..', 'assets', 'gpu-runtime', 'dist');

/** The bundled runtime, read from `directory` (a parameter for tests). */
export function bundledGpuRuntime(directory: string, options: GpuRuntimeOptions = {}): GpuRuntime {
  return new DirectoryRuntime(directory, 'GpuRuntime.fromBundledAsset', 'Build it with `npm run build:runtime` in the cdk-enclave-gpu package (`npm run build` builds it too)', options);
}

/** The default runtime of each app, so its constructs share one archive (read, tarred and hashed once). */
const defaultRuntimes = new WeakMap<Construct, GpuRuntime>();

/** The default runtime of a construct: the app's context override, else the bundled one. */
export function defaultGpuRuntime(scope: Construct): GpuRuntime {
  const app = scope.node.root;
  let runtime = defaultRuntimes.get(app);
  if (runtime === undefined) {
    const override = scope.node.tryGetContext(GPU_RUNTIME_DIRECTORY_CONTEXT);
    if (override !== undefined && (typeof override !== 'string' || override.length === 0)) {
      throw new Error(`context ${GPU_RUNTIME_DIRECTORY_CONTEXT} must be the path of a runtime directory, got ${JSON.stringify(override)}`);
    }
    runtime = override === undefined ? GpuRuntime.fromBundledAsset() : GpuRuntime.fromDirectory(override);
    defaultRuntimes.set(app, runtime);
  }
  return runtime;
}

/** The entry point every runtime directory must hold. */
const RUNTIME_ENTRY = 'egpu.js';

class DirectoryRuntime extends GpuRuntime {
  private archive?: { readonly sha256: string; readonly path: string };

  private readonly cudaProvider?: OnnxCudaProviderPackage;

  constructor(private readonly directory: string, private readonly factory: string, private readonly fix: string, options: GpuRuntimeOptions) {
    super();
    const entry = path.join(directory, RUNTIME_ENTRY);
    if (!fs.existsSync(entry)) {
      throw new Error(`${factory}: ${entry} does not exist. ${fix}.`);
    }
    if (options.onnxCudaProviderSha512 !== undefined) {
      this.cudaProvider = { url: onnxCudaProviderUrl(), sha512: sha512Hex(options.onnxCudaProviderSha512, factory) };
    }
  }

  public get sha256(): string {
    return this.stage().sha256;
  }

  public bind(scope: Construct): GpuRuntimeConfig {
    const archive = this.stage();
    const asset = new s3_assets.Asset(scope, 'GpuRuntime', { path: archive.path });
    return { bucket: asset.bucket, objectKey: asset.s3ObjectKey, sha256: archive.sha256, onnxCudaProvider: this.cudaProvider };
  }

  /** Builds the archive once per runtime (the files are read now, not at deployment). */
  private stage(): { sha256: string; path: string } {
    if (!this.archive) {
      this.archive = stageRuntimeArchive(runtimeFiles(this.directory, this.factory, this.fix));
    }
    return this.archive;
  }
}

/** The NuGet package id of onnxruntime's CUDA provider for Linux (onnxruntime-node's own install script fetches the same). */
const CUDA_PROVIDER_PACKAGE = 'Microsoft.ML.OnnxRuntime.Gpu.Linux';

/** The download URL of the CUDA provider package of the onnxruntime-node version the lockfile pins (NuGet's flat container). */
function onnxCudaProviderUrl(): string {
  const packages = RUNTIME_PACKAGE_LOCK.packages as Record<string, { version: string }>;
  const version = packages['node_modules/onnxruntime-node'].version.toLowerCase();
  const id = CUDA_PROVIDER_PACKAGE.toLowerCase();
  return `https://api.nuget.org/v3-flatcontainer/${id}/${version}/${id}.${version}.nupkg`;
}

/** A SHA-512 given as 128 hex characters or as NuGet's 88-character base64, in lower-case hex. */
function sha512Hex(value: string, factory: string): string {
  if (/^[0-9a-fA-F]{128}$/.test(value)) return value.toLowerCase();
  if (/^[A-Za-z0-9+/]{86}==$/.test(value)) return Buffer.from(value, 'base64').toString('hex');
  throw new Error(`${factory}: onnxCudaProviderSha512 must be a SHA-512: 128 hex characters, or the 88-character base64 NuGet publishes as packageHash; got '${value.length > 140 ? `${value.slice(0, 140)}...` : value}'`);
}

/** A file of the runtime archive. */
interface ArchiveEntry {
  readonly name: string;
  readonly data: Buffer;
}

/** The archive's files: egpu.js, the addons, and the pinned package.json and lockfile, by name. */
function runtimeFiles(directory: string, factory: string, fix: string): ArchiveEntry[] {
  let names: string[];
  try {
    names = fs.readdirSync(directory).filter((name) => name === RUNTIME_ENTRY || name.endsWith('.node'));
  } catch (error) {
    throw new Error(`${factory}: cannot read ${directory} (${(error as Error).message}). ${fix}.`);
  }
  const files = names.map((name) => ({ name, data: fs.readFileSync(path.join(directory, name)) }));
  files.push(
    { name: 'package.json', data: Buffer.from(`${JSON.stringify(RUNTIME_PACKAGE_JSON, undefined, 2)}\n`) },
    { name: 'package-lock.json', data: Buffer.from(`${JSON.stringify(RUNTIME_PACKAGE_LOCK, undefined, 2)}\n`) },
  );
  return files.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Writes the archive of `files` into a staging directory (once per content) and returns its SHA-256 and path. */
function stageRuntimeArchive(files: readonly ArchiveEntry[]): { sha256: string; path: string } {
  return stageFile('cdk-enclave-gpu-runtime', 'tar', tarArchive(files));
}

/**
 * Writes `bytes` to `<tmpdir>/<directory>/<sha256>.<extension>` (once per content: the name
 * is the content's SHA-256, and files appear there only whole, by rename; one of another
 * size is replaced) for a file asset, and returns the SHA-256 and the path.
 */
export function stageFile(directory: string, extension: string, bytes: Buffer): { sha256: string; path: string } {
  const sha256 = crypto.createHash('sha256').update(bytes).digest('hex');
  const dir = path.join(os.tmpdir(), directory);
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${sha256}.${extension}`);
  if (!fs.existsSync(file) || fs.statSync(file).size !== bytes.length) {
    // Write then rename, so a concurrent synth never stages a half-written file.
    const partial = `${file}.${process.pid}.partial`;
    fs.writeFileSync(partial, bytes);
    fs.renameSync(partial, file);
  }
  return { sha256, path: file };
}

/** Fixed modification time of every entry (1980-01-01, as in reproducible zip files): the bytes depend on content only. */
const ARCHIVE_MTIME = 315532800;

/**
 * A POSIX ustar archive of regular files, byte-for-byte reproducible: entries in the order
 * given, mode 0644, owner 0:0, a fixed time. Uncompressed, so that no compressor version
 * can change the bytes (and with them the content hash).
 */
export function tarArchive(files: readonly ArchiveEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const file of files) {
    if (!/^[A-Za-z0-9._-]{1,99}$/.test(file.name)) {
      throw new Error(`runtime archive: '${file.name}' is not a plain file name of at most 99 characters`);
    }
    const header = Buffer.alloc(512);
    header.write(file.name, 0, 'ascii');
    header.write('0000644\0', 100, 'ascii');
    header.write('0000000\0', 108, 'ascii');
    header.write('0000000\0', 116, 'ascii');
    header.write(`${file.data.length.toString(8).padStart(11, '0')}\0`, 124, 'ascii');
    header.write(`${ARCHIVE_MTIME.toString(8).padStart(11, '0')}\0`, 136, 'ascii');
    header.write('        ', 148, 'ascii');
    header.write('0', 156, 'ascii');
    header.write('ustar\0', 257, 'ascii');
    header.write('00', 263, 'ascii');
    let checksum = 0;
    for (const byte of header) checksum += byte;
    header.write(`${checksum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
    blocks.push(header, file.data, Buffer.alloc((512 - (file.data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}
