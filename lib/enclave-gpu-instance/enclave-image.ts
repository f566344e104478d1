import * as fs from 'fs';
import * as path from 'path';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as s3_assets from 'aws-cdk-lib/aws-s3-assets';
import { Construct } from 'constructs';
import { measureEif } from '../attestation-kms/eif-measurements';
import { pcrProblems } from '../attestation-kms/pcr-values';
import { Pcrs } from '../attestation-kms/pcrs';

/**
 * Options for {@link EnclaveImage.fromEifFile}.
 */
export interface EifFileOptions {
  /**
   * PCRs you expect, for example from `nitro-cli build-enclave` in your pipeline. PCR0,
   * PCR1, PCR2 and PCR8 are computed from the file in any case; a value given here must
   * match the file's, so a stale pin fails the synth instead of locking the enclave out.
   * PCR3 and PCR4 (the parent's role and instance) are not properties of the file and are
   * added as given.
   *
   * @default - the PCRs computed from the file
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
   * The file is read now: its structure is checked and its PCRs computed
   * (`EifMeasurements.fromFile`).
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
  private readonly sha256: string;

  constructor(filePath: string, options: EifFileOptions) {
    super();
    this.filePath = path.resolve(filePath);
    this.sizeBytes = checkIsFile(this.filePath);
    const problems = options.pcrs ? pcrProblems(options.pcrs) : [];
    if (problems.length > 0) {
      throw new Error(`EnclaveImage.fromEifFile: options.pcrs is invalid: ${problems.join('; ')}`);
    }
    const measurement = measureEif(this.filePath);
    this.sha256 = measurement.sha256;
    this.pcrs = withExpectedPcrs(this.filePath, measurement.pcrs, options.pcrs ?? {});
  }

  public bind(scope: Construct): EnclaveImageConfig {
    const asset = new s3_assets.Asset(scope, 'EnclaveImageFile', { path: this.filePath });
    return {
      bucket: asset.bucket,
      objectKey: asset.s3ObjectKey,
      sha256: this.sha256,
      sizeBytes: this.sizeBytes,
      pcrs: this.pcrs,
    };
  }
}

/** Checks that `filePath` is a file and returns its size in bytes. */
function checkIsFile(filePath: string): number {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(filePath);
  } catch {
    throw new Error(`EnclaveImage.fromEifFile: ${filePath} does not exist. Build it with 'nitro-cli build-enclave' and pass its path.`);
  }
  if (!stat.isFile()) {
    throw new Error(`EnclaveImage.fromEifFile: ${filePath} is not a file. Pass the path of the .eif file itself.`);
  }
  return stat.size;
}

/** The PCRs that are properties of the image file itself. */
const FILE_PCRS = ['pcr0', 'pcr1', 'pcr2', 'pcr8'] as const;

/** The file's PCRs plus the expected ones, refusing an expected value that differs from the file's. */
function withExpectedPcrs(filePath: string, measured: Pcrs, expected: Pcrs): Pcrs {
  const stale = FILE_PCRS.filter((field) => expected[field] !== undefined && measured[field] !== expected[field]);
  if (stale.length > 0) {
    const detail = stale
      .map((field) => `${field} ${expected[field]!.slice(0, 12)}... but the file ${measured[field] ? `measures ${measured[field]!.slice(0, 12)}...` : 'is not signed'}`)
      .join('; ');
    throw new Error(`EnclaveImage.fromEifFile: options.pcrs does not match ${filePath}: ${detail}. Rebuild the pin from this file, or drop it: the file's PCRs are computed for you.`);
  }
  return { ...expected, ...measured };
}
