/**
 * Builds the shipped agent: one ESM bundle for the CLI and one for each of its worker threads (backup scan, restore decode), in
 * dist/agent/ (run by `npm ci` through `prepare`, and by `npm run build:agent`). The bundle starts
 * faster and uses less memory than running the TypeScript sources, which stay the development entry.
 */
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));

export async function buildAgent(outdir = `${root}dist/agent`): Promise<string> {
  // chunk names are content hashes: without this, every build would leave the last one's behind
  rmSync(outdir, { recursive: true, force: true });
  await build({
    entryPoints: {
      'cdp-agent': `${root}agent/bin/cdp-agent.ts`,
      'scan-worker': `${root}agent/backup/scan-worker.ts`,
      'decode-worker': `${root}agent/restore/decode-worker.ts`,
    },
    outdir,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node22',
    outExtension: { '.js': '.mjs' },
    sourcemap: 'linked',
    logLevel: 'warning',
    banner: {
      js: "import { createRequire as __cdpRequire } from 'node:module'; const require = __cdpRequire(import.meta.url);",
    },
  });
  return `${outdir}/cdp-agent.mjs`;
}

if (import.meta.main) console.log(`agent built: ${await buildAgent()}`);
