import { BOOT_LOG_PATH } from '../../observability/cloudwatch-agent-config';

/** A file the boot script writes, with its octal mode. */
export interface BootFile {
  readonly path: string;
  readonly content: string;
  readonly mode: '0600' | '0640' | '0644' | '0755';
}

const HEREDOC_DELIMITER = 'ENCLAVE_GPU_EOF';

/**
 * Collects the steps of a bash boot script (files to write, commands to run, progress
 * messages) and renders them as user-data lines.
 *
 * Files are written with quoted here-documents, so the shell expands nothing in them:
 * what the construct rendered is what lands on disk (CloudFormation has already
 * substituted any tokens such as the region).
 */
export class BootScript {
  private readonly lines: string[] = [
    'set -euo pipefail',
    // Keep a copy of the boot output on the instance (the CloudWatch agent ships it); cloud-init's log has it too.
    `exec > >(tee -a ${BOOT_LOG_PATH}) 2>&1`,
  ];

  /** Prints a progress line to the boot log. */
  public step(message: string): this {
    this.lines.push(`echo ${shellQuote(`[enclave-gpu] ${message}`)}`);
    return this;
  }

  /** Runs a command line as written. */
  public run(...commands: string[]): this {
    this.lines.push(...commands);
    return this;
  }

  /** Writes a file, creating its directory, with the given mode. */
  public writeFile(file: BootFile): this {
    this.lines.push(...writeFileCommands(file, HEREDOC_DELIMITER));
    return this;
  }

  /** The script as user-data command lines. */
  public render(): string[] {
    return [...this.lines];
  }
}

/**
 * The commands that write a file through a quoted here-document ending at `delimiter`
 * (nothing in the content is expanded), create its directory and set its mode.
 */
export function writeFileCommands(file: BootFile, delimiter: string): string[] {
  if (file.content.split('\n').includes(delimiter)) {
    throw new Error(`${file.path}: content may not contain a line '${delimiter}'`);
  }
  const body = file.content.endsWith('\n') ? file.content : `${file.content}\n`;
  return [
    `install -d -m 0755 ${shellQuote(dirname(file.path))}`,
    `cat > ${shellQuote(file.path)} <<'${delimiter}'\n${body}${delimiter}`,
    `chmod ${file.mode} ${shellQuote(file.path)}`,
  ];
}

/** Quotes a string for bash, so it is passed as one word and nothing in it is expanded. */
export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/** The directory part of an absolute path. */
export function dirname(path: string): string {
  const slash = path.lastIndexOf('/');
  return slash <= 0 ? '/' : path.slice(0, slash);
}

/** An S3 object the boot fetches, with the SHA-256 it must have. */
export interface CheckedS3Object {
  readonly s3Url: string;
  readonly sha256: string;
  /** The region of the bucket. */
  readonly region: string;
}

/** Downloads `object` to `path` (then check it with {@link sha256CheckCommand} before using it). */
export function s3CopyCommand(object: CheckedS3Object, path: string): string {
  return `aws s3 cp ${shellQuote(object.s3Url)} ${path} --region ${object.region} --only-show-errors`;
}

/** Fails (and so fails the boot) unless the file at `path` has the SHA-256 `object` names. */
export function sha256CheckCommand(object: CheckedS3Object, path: string): string {
  return `echo ${shellQuote(`${object.sha256}  ${path}`)} | sha256sum --check --strict -`;
}
