import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as s3_assets from 'aws-cdk-lib/aws-s3-assets';
import { Construct } from 'constructs';
import { Pcrs, pcrProblems } from '../attestation-kms/pcrs';

/** The first four bytes of every enclave image file (EIF). */
const EIF_MAGIC = Buffer.from('.eif', 'ascii');

/**
 * Options for {@link EnclaveImage.fromEifFile}.
 */
export interface EifFileOptions {
  /**
   * The PCR measurements of the image, as printed by `nitro-cli build-enclave` or
   * `nitro-cli describe-eif`. They are validated and exposed to attestation policies.
   *
   * @default - none known
   */
  readonly pcrs?: Pcrs;
}

/**
 * An enclave image as the parent instance sees it once bound to a scope.
 */
export interface EnclaveImageConfig {
  /** The bucket that holds the enclave image file. */
  readonly bucket: s3.IBucket;

  /** The key of the enclave image file in `bucket`. */
  readonly objectKey: string;

  /** SHA-256 of the file, in lower-case hex, checked on the instance after download. */
  readonly sha256: string;

  /** Size of the file in bytes. */
  readonly sizeBytes: number;

  /**
   * The image's PCR measurements, where known.
   *
   * @default - none known
   */
  readonly pcrs?: Pcrs;
}

/**
 * The enclave image file (EIF) an {@link EnclaveGpuInstance} runs in its Nitro enclave.
 */
export abstract class EnclaveImage {
  /**
   * An EIF built beforehand (`nitro-cli build-enclave`), shipped as a CDK file asset.
   *
   * The file is checked now: it must exist and start with the EIF magic bytes.
   *
   * @param filePath path to the `.eif` file
   */
  public static fromEifFile(filePath: string, options: EifFileOptions = {}): EnclaveImage {
    return new EifFileImage(filePath, options);
  }

  /** The PCR measurements of the image, where known. */
  public abstract readonly pcrs?: Pcrs;

  /**
   * Binds the image to a construct: creates whatever resources deliver it to the instance.
   */
  public abstract bind(scope: Construct): EnclaveImageConfig;
}

class EifFileImage extends EnclaveImage {
  public readonly pcrs?: Pcrs;
  private readonly filePath: string;
  private readonly sizeBytes: number;

  constructor(filePath: string, options: EifFileOptions) {
    super();
    this.filePath = path.resolve(filePath);
    this.sizeBytes = checkEifFile(this.filePath);
    const problems = options.pcrs ? pcrProblems(options.pcrs) : [];
    if (problems.length > 0) {
      throw new Error(`EnclaveImage.fromEifFile: options.pcrs is invalid: ${problems.join('; ')}`);
    }
    this.pcrs = options.pcrs;
  }

  public bind(scope: Construct): EnclaveImageConfig {
    const asset = new s3_assets.Asset(scope, 'EnclaveImageFile', { path: this.filePath });
    return {
      bucket: asset.bucket,
      objectKey: asset.s3ObjectKey,
      sha256: sha256OfFile(this.filePath),
      sizeBytes: this.sizeBytes,
      pcrs: this.pcrs,
    };
  }
}

/** Checks that `filePath` is a readable EIF and returns its size in bytes. */
function checkEifFile(filePath: string): number {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(filePath);
  } catch {
    throw new Error(`EnclaveImage.fromEifFile: ${filePath} does not exist. Build it with 'nitro-cli build-enclave' and pass its path.`);
  }
  if (!stat.isFile()) {
    throw new Error(`EnclaveImage.fromEifFile: ${filePath} is not a file. Pass the path of the .eif file itself.`);
  }
  const magic = Buffer.alloc(EIF_MAGIC.length);
  const fd = fs.openSync(filePath, 'r');
  try {
    fs.readSync(fd, magic, 0, magic.length, 0);
  } finally {
    fs.closeSync(fd);
  }
  if (!magic.equals(EIF_MAGIC)) {
    throw new Error(
      `EnclaveImage.fromEifFile: ${filePath} is not an enclave image file (it does not start with '.eif'). ` +
      "Pass the output of 'nitro-cli build-enclave --output-file'.",
    );
  }
  return stat.size;
}

/** SHA-256 of a file, read in 1 MiB chunks so large images are never held in memory whole. */
function sha256OfFile(filePath: string): string {
  const hash = crypto.createHash('sha256');
  const chunk = Buffer.alloc(1024 * 1024);
  const fd = fs.openSync(filePath, 'r');
  try {
    let read: number;
    while ((read = fs.readSync(fd, chunk, 0, chunk.length, null)) > 0) {
      hash.update(chunk.subarray(0, read));
    }
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest('hex');
}
