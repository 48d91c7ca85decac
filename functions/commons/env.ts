/** Reads the function's environment once, at module load. */
import { ConfigError } from '#core/errors.ts';

export function requireEnv(name: string, env: NodeJS.ProcessEnv = process.env): string {
  const v = env[name];
  if (!v) throw new ConfigError(name, 'is not set in the function environment');
  return v;
}
