import { fileURLToPath } from 'node:url';

/** The repository root. */
export const projectRoot = fileURLToPath(new URL('../..', import.meta.url));
/** Where the local cloud keeps its state file, logs and stack outputs (gitignored). */
export const stateDir = `${projectRoot}.local-cloud`;
export const serverStateFile = `${stateDir}/server.json`;
export const outputsFile = `${stateDir}/outputs.json`;
