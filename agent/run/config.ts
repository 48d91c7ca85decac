/**
 * The `cdp-agent run` configuration file (JSON, docs in README "Continuous protection"):
 *
 *   { "interval": "30s", "stateDir": "/var/lib/cdp-agent", "statusFile": "/var/lib/cdp-agent/status.json",
 *     "safes": [ { "safe": "/backups/db1", "devices": ["/dev/vg0/db-snap=db"],
 *                  "preSnapshot": "…", "postSnapshot": "…", "encryptKeyFile": "…",
 *                  "replicateTo": ["s3://my-safes/safes/db1", "/mnt/nas/db1"], "bwlimit": "20M" } ] }
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { CdpError } from '#core/errors.ts';

const duration = z.string().regex(/^\d+(ms|s|m|h)$/, 'a duration like 30s, 5m, 1h');

export const runConfigSchema = z.object({
  interval: duration.default('15m'),
  stateDir: z.string().optional(),
  statusFile: z.string().optional(),
  safes: z
    .array(
      z.object({
        safe: z.string().min(1),
        devices: z.array(z.string().min(1)).min(1),
        blockSize: z.string().optional(),
        preSnapshot: z.string().optional(),
        postSnapshot: z.string().optional(),
        encryptKeyFile: z.string().optional(),
        replicateTo: z.array(z.string().min(1)).default([]),
        /** Device id → a changed-extent list file the tracker rewrites before each interval. */
        changedLists: z.record(z.string(), z.string()).optional(),
        bwlimit: z.string().optional(),
      }),
    )
    .min(1),
});

export type RunConfig = z.infer<typeof runConfigSchema>;

export function parseDuration(s: string): number {
  const m = /^(\d+)(ms|s|m|h)$/.exec(s);
  if (!m) throw new CdpError('E_USAGE', `bad duration '${s}' (examples: 30s, 5m, 1h)`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
}

export function loadRunConfig(path: string): RunConfig {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new CdpError('E_CONFIG', `--config ${path}: ${(e as Error).message}`);
  }
  const r = runConfigSchema.safeParse(json);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new CdpError('E_CONFIG', `--config ${path}: ${i?.path.join('.')}: ${i?.message}`);
  }
  return r.data;
}
