/**
 * `egpu sgs` as a real process (tsx on the CLI source), for the tests that need one: its
 * stdout and stderr captured, its ready line parsed, its exit awaited.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { CLI, REPO_ROOT, TSX, until } from './fixtures';

export class SgsProcess {
  static async start(configPath: string, env: NodeJS.ProcessEnv = {}): Promise<SgsProcess> {
    const child = spawn(TSX, [CLI, 'sgs', '--config', configPath], { cwd: REPO_ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const sgs = new SgsProcess(child);
    await until(() => sgs.ready !== undefined || sgs.exitCode !== undefined, 'egpu sgs to start');
    if (sgs.ready === undefined) throw new Error(`egpu sgs exited with ${sgs.exitCode}:\n${sgs.stdout}\n${sgs.stderr}`);
    return sgs;
  }

  stdout = '';
  stderr = '';
  exitCode: number | null | undefined;
  /** From the ready line: the SGS process's own pid (tsx runs it in a child) and the health URL. */
  ready: { pid: number; healthUrl: string } | undefined;
  readonly exited: Promise<number | null>;

  private constructor(readonly child: ChildProcess) {
    child.stdout!.setEncoding('utf8').on('data', (text: string) => {
      this.stdout += text;
      const match = /sgs: ready: .* health tcp:([\d.]+):(\d+), pid (\d+)/.exec(this.stdout);
      if (match && !this.ready) this.ready = { pid: Number(match[3]), healthUrl: `http://${match[1]}:${match[2]}/health` };
    });
    child.stderr!.setEncoding('utf8').on('data', (text: string) => { this.stderr += text; });
    this.exited = new Promise((resolve) => child.on('exit', (code) => {
      this.exitCode = code;
      resolve(code);
    }));
  }

  async health(): Promise<{ status: number; body: Record<string, unknown> }> {
    const response = await fetch(this.ready!.healthUrl);
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  }

  /** Signals the SGS process itself. */
  signal(signal: NodeJS.Signals): void {
    process.kill(this.ready!.pid, signal);
  }

  kill(): void {
    if (this.exitCode === undefined) this.child.kill('SIGKILL');
    try {
      if (this.ready) process.kill(this.ready.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}
