import { describe, expect, it } from 'vitest';
import { COMMANDS } from '../src/cli';
import { dispatch } from '../src/cli/command';

function capture() {
  const out = { stdout: '', stderr: '' };
  return { out, io: { stdout: (t: string) => { out.stdout += t; }, stderr: (t: string) => { out.stderr += t; } } };
}

describe('egpu help', () => {
  it('lists every command with no arguments', async () => {
    const { out, io } = capture();
    expect(await dispatch(COMMANDS, [], io)).toBe(0);
    for (const command of COMMANDS) {
      expect(out.stdout).toContain(`egpu ${command.path.join(' ')}`);
    }
  });

  it.each(COMMANDS.map((c) => [c.path.join(' '), c] as const))('egpu %s --help prints its usage and every option', async (_name, command) => {
    const { out, io } = capture();
    expect(await dispatch(COMMANDS, [...command.path, '--help'], io)).toBe(0);
    expect(out.stdout).toContain(`Usage: egpu ${command.path.join(' ')} [options]`);
    for (const option of Object.keys(command.options)) {
      expect(out.stdout, `--${option} missing from the help of ${command.path.join(' ')}`).toContain(`--${option}`);
    }
    expect(out.stderr).toBe('');
  });

  it('refuses an unknown command with status 2', async () => {
    const { out, io } = capture();
    expect(await dispatch(COMMANDS, ['attest', 'sign'], io)).toBe(2);
    expect(out.stderr).toContain("unknown command 'attest sign'");
  });

  it('refuses an unknown option with status 2 and the usage', async () => {
    const { out, io } = capture();
    expect(await dispatch(COMMANDS, ['attest', 'verify', '--doc', 'x', '--bogus'], io)).toBe(2);
    expect(out.stderr).toMatch(/Unknown option '--bogus'[\s\S]*Usage: egpu attest verify/);
  });
});
