/**
 * The agent's local state directory (default ~/.local/state/cdp-agent, or CDP_AGENT_STATE, or
 * --state-dir): the agent id, and per safe the change-tracking state of each device and the dedup
 * index. Everything here can be rebuilt from the safe; nothing here is needed to restore.
 */
import { createHash, randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.CDP_AGENT_STATE ?? join(env.XDG_STATE_HOME ?? join(homedir(), '.local', 'state'), 'cdp-agent');
}

export interface AgentIdentity {
  readonly id: string;
}

/** Reads the agent id, creating it on first use. */
export function agentIdentity(stateDir: string): AgentIdentity {
  const file = join(stateDir, 'agent.json');
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as AgentIdentity;
  } catch {
    mkdirSync(stateDir, { recursive: true });
    const id = { id: randomUUID() };
    writeFileSync(`${file}.tmp`, JSON.stringify(id));
    renameSync(`${file}.tmp`, file);
    return id;
  }
}

/** The state folder of one safe, keyed by its location. */
export function safeStateDir(stateDir: string, location: string): string {
  const h = createHash('sha256').update(location).digest('hex').slice(0, 16);
  const dir = join(stateDir, 'safes', h);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'location.txt'), `${location}\n`);
  return dir;
}
