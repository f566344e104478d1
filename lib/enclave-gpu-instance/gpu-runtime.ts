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
  public static fromBundledAsset(): GpuRuntime {
    return bundledGpuRuntime(BUNDLED_RUNTIME_DIRECTORY);
  }

  /**
   * A runtime built elsewhere: a directory holding `egpu.js` and any native addons
   * (`*.node`) beside it, the layout of `assets/gpu-runtime/dist`. Other files are ignored.
   *
   * @param directory path to the directory
   */
  public static fromDirectory(directory: string): GpuRuntime {
    return new DirectoryRuntime(path.resolve(directory), 'GpuRuntime.fromDirectory', 'Pass a directory that holds egpu.js (build it with `npm run build:runtime`)');
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
export function bundledGpuRuntime(directory: string): GpuRuntime {
  return new DirectoryRuntime(directory, 'GpuRuntime.fromBundledAsset', 'Build it with `npm run build:runtime` in the cdk-enclave-gpu package (`npm run build` builds it too)');
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
export const RUNTIME_ENTRY = 'egpu.js';

class DirectoryRuntime extends GpuRuntime {
  private archive?: { readonly sha256: string; readonly path: string };

  constructor(private readonly directory: string, private readonly factory: string, private readonly fix: string) {
    super();
    const entry = path.join(directory, RUNTIME_ENTRY);
    if (!fs.existsSync(entry)) {
      throw new Error(`${factory}: ${entry} does not exist. ${fix}.`);
    }
  }

  public get sha256(): string {
    return this.stage().sha256;
  }

  public bind(scope: Construct): GpuRuntimeConfig {
    const archive = this.stage();
    const asset = new s3_assets.Asset(scope, 'GpuRuntime', { path: archive.path });
    return { bucket: asset.bucket, objectKey: asset.s3ObjectKey, sha256: archive.sha256 };
  }

  /** Builds the archive once per runtime (the files are read now, not at deployment). */
  private stage(): { sha256: string; path: string } {
    if (!this.archive) {
      this.archive = stageRuntimeArchive(runtimeFiles(this.directory, this.factory, this.fix));
    }
    return this.archive;
  }
}

/** A file of the runtime archive. */
export interface ArchiveEntry {
  readonly name: string;
  readonly data: Buffer;
}

/** The archive's files: egpu.js, the addons, and the pinned package.json and lockfile, by name. */
export function runtimeFiles(directory: string, factory: string, fix: string): ArchiveEntry[] {
  let names: string[];
  try {
    names = fs.readdirSync(directory).filter((name) => name === RUNTIME_ENTRY || name.endsWith('.node')).sort();
  } catch (error) {
    throw new Error(`${factory}: cannot read ${directory} (${(error as Error).message}). ${fix}.`);
  }
  if (!names.includes(RUNTIME_ENTRY)) {
    throw new Error(`${factory}: ${path.join(directory, RUNTIME_ENTRY)} does not exist. ${fix}.`);
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
  const archive = tarArchive(files);
  const sha256 = crypto.createHash('sha256').update(archive).digest('hex');
  const dir = path.join(os.tmpdir(), 'cdk-enclave-gpu-runtime');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${sha256}.tar`);
  if (!fs.existsSync(file) || fs.statSync(file).size !== archive.length) {
    // Write then rename, so a concurrent synth never stages a half-written archive.
    const partial = `${file}.${process.pid}.partial`;
    fs.writeFileSync(partial, archive);
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
