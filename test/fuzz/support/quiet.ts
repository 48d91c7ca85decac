/** Runs a command use case with console.log and console.error captured instead of printed. */

export interface Captured<T> {
  readonly value?: T;
  readonly error?: unknown;
  readonly stdout: string;
  readonly stderr: string;
}

export async function quiet<T>(fn: () => Promise<T>): Promise<Captured<T>> {
  const out: string[] = [];
  const err: string[] = [];
  const { log, error, warn } = console;
  console.log = (...a: unknown[]) => void out.push(a.map(String).join(' '));
  console.error = (...a: unknown[]) => void err.push(a.map(String).join(' '));
  console.warn = console.error;
  try {
    const value = await fn();
    return { value, stdout: out.join('\n'), stderr: err.join('\n') };
  } catch (e) {
    return { error: e, stdout: out.join('\n'), stderr: err.join('\n') };
  } finally {
    console.log = log;
    console.error = error;
    console.warn = warn;
  }
}

/** Like quiet, but a failure is thrown (with what the command printed). */
export async function loud<T>(what: string, fn: () => Promise<T>): Promise<T> {
  const r = await quiet(fn);
  if ('error' in r && r.error !== undefined) {
    throw new Error(`${what} failed: ${(r.error as Error).stack ?? r.error}\n${r.stderr}`);
  }
  return r.value as T;
}
