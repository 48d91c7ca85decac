/** Runs the real cdp-agent CLI as a child process (as a user or a scheduler would). */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const AGENT_BIN = fileURLToPath(new URL('../../agent/bin/cdp-agent.ts', import.meta.url));

export interface CliResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export function startAgent(
  args: string[],
  env: Record<string, string> = {},
): { child: ChildProcess; done: Promise<CliResult> } {
  const child = spawn(process.execPath, [AGENT_BIN, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  // 'close', not 'exit': at 'exit' the pipes may still hold output not read yet (a loaded machine)
  const done = new Promise<CliResult>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })),
  );
  return { child, done };
}

export async function agent(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return startAgent(args, env).done;
}

/** `cdp-agent restore --remote` of one device of an encrypted safe, with `--json` (and `more`). */
export function remoteRestoreArgs(
  o: { safe: string; device: string; fn: string; keyFile: string },
  rp: string,
  to: string,
  ...more: string[]
): string[] {
  return [
    'restore',
    '--safe',
    o.safe,
    '--device',
    o.device,
    '--rp',
    rp,
    '--to',
    to,
    '--remote',
    o.fn,
    '--encrypt-key-file',
    o.keyFile,
    '--json',
    ...more,
  ];
}
