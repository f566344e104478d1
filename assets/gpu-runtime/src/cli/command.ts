import { parseArgs, ParseArgsConfig } from 'node:util';
import { RuntimeError, UsageError } from '../errors';

type OptionSpec = NonNullable<ParseArgsConfig['options']>;

/** One `egpu` command: its name, its help, and what it does with its parsed options. */
export interface Command {
  /** Words after `egpu`, for example `['attest', 'verify']`. */
  readonly path: readonly string[];
  readonly summary: string;
  /** Option lines for --help, one per option. */
  readonly usage: string;
  readonly options: OptionSpec;
  run(options: Record<string, string | boolean | string[] | undefined>, io: CommandIo): Promise<number>;
}

/** Where a command writes: injected so tests can capture it. */
export interface CommandIo {
  stdout(text: string): void;
  stderr(text: string): void;
}

export const processIo: CommandIo = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
};

/**
 * Finds the command the arguments name, parses its options strictly and runs it.
 * `--help` anywhere prints the help of the deepest command (or group) named. Returns the
 * exit status: 0 success, 1 a refused input or failed check, 2 wrong usage.
 */
export async function dispatch(commands: readonly Command[], argv: readonly string[], io: CommandIo = processIo): Promise<number> {
  const words = argv.filter((a) => !a.startsWith('-'));
  const command = [...commands]
    .sort((a, b) => b.path.length - a.path.length)
    .find((c) => c.path.every((w, i) => words[i] === w));
  const wantsHelp = argv.includes('--help') || argv.includes('-h');

  if (!command) {
    const group = words.length > 0 ? commands.filter((c) => c.path[0] === words[0]) : [];
    io[wantsHelp || argv.length === 0 ? 'stdout' : 'stderr'](overview(group.length > 0 ? group : commands));
    if (wantsHelp || argv.length === 0) return 0;
    io.stderr(`egpu: unknown command '${words.join(' ')}'\n`);
    return 2;
  }
  if (wantsHelp) {
    io.stdout(help(command));
    return 0;
  }
  let values: Record<string, string | boolean | string[] | undefined>;
  try {
    const parsed = parseArgs({ args: argv.slice(command.path.length), options: command.options, strict: true, allowPositionals: false });
    // Commands declare only string options (some `multiple`) and boolean flags, so lists hold strings.
    values = parsed.values as Record<string, string | boolean | string[] | undefined>;
  } catch (error) {
    io.stderr(`egpu ${command.path.join(' ')}: ${(error as Error).message}\n${help(command)}`);
    return 2;
  }
  try {
    return await command.run(values, io);
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr(`egpu ${command.path.join(' ')}: ${error.reason}\n${help(command)}`);
      return 2;
    }
    if (error instanceof RuntimeError) {
      io.stderr(`egpu ${command.path.join(' ')}: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
}

function help(command: Command): string {
  return `Usage: egpu ${command.path.join(' ')} [options]\n\n${command.summary}\n\nOptions:\n${command.usage}\n  --help                 this help\n`;
}

function overview(commands: readonly Command[]): string {
  const width = Math.max(...commands.map((c) => c.path.join(' ').length));
  const lines = commands.map((c) => `  egpu ${c.path.join(' ').padEnd(width)}  ${c.summary.split('\n')[0]}`);
  return `Usage: egpu <command> [options]   (egpu <command> --help for its options)\n\nCommands:\n${lines.join('\n')}\n`;
}

/** A required string option, or a UsageError naming it. */
export function requireOption(values: Record<string, unknown>, name: string): string {
  const value = values[name];
  if (typeof value !== 'string' || value.length === 0) {
    throw new UsageError(`--${name} is required`);
  }
  return value;
}
