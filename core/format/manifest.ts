/**
 * The manifest commits a recovery point (docs/FORMAT.md "Manifest"). It is written strictly after
 * every object it references is durable, never changes afterwards, and an RP exists if and only if
 * its manifest exists.
 */
import { z } from 'zod';
import { CdpError } from '../errors.ts';
import { DEVICE_ID, RUN_ID } from '../keys.ts';
import { READABLE_VERSIONS } from './constants.ts';

const hex64 = z.string().regex(/^[0-9a-f]{64}$/); // a SHA-256 or a segment id
const count = z.number().int().nonnegative();
/** A date and time that parses (retention and the catalog order RPs by it). */
export const timestamp = z.string().refine((s) => Number.isFinite(Date.parse(s)), 'not a date and time');

/** The `version` of an object that exists since format v1 and is written as v2 now. */
export const readableVersion = z.union([z.literal(1), z.literal(2)]);
/** The `version` of an object new in format v2. */
export const v2Version = z.literal(2);

export const manifestDeviceSchema = z.object({
  id: z.string().regex(DEVICE_ID),
  /** The path the agent read (informational; restores take the id). */
  source: z.string(),
  sizeBytes: count,
  blockSize: count,
  blockMap: z.object({ key: z.string(), bytes: count, sha256: hex64, extents: count }),
  /**
   * v2: this device's map is a full map although the RP has a parent (the backup could not build
   * on the parent's chain of this device, so it read the whole device again).
   */
  full: z.boolean().optional(),
  /** Blocks whose content differs from the parent RP (all non-zero blocks for a full). */
  changedBlocks: count,
  /** Of the changed blocks: now zero (not stored), and already stored in the safe (deduplicated). */
  zeroBlocks: count,
  dedupBlocks: count,
  /** Frame bytes this device added to new segments. */
  storedBytes: count,
});

export const manifestSchema = z.object({
  format: z.literal('cdp-manifest'),
  version: readableVersion,
  safe: z.string(),
  rp: z.number().int().positive(),
  parent: z.number().int().positive().nullable(),
  createdAt: timestamp,
  /**
   * v2: the compaction generation the writer's view was (docs/FORMAT.md §7a): it references nothing
   * that generation lists as garbage. 0 when the safe had no generation; absent in v1 manifests.
   */
  view: count.optional(),
  /** v2: the backup run that wrote this RP (its block maps are under map/<rp>/<run>/). */
  run: z.string().regex(RUN_ID).optional(),
  agent: z.object({ id: z.string(), version: z.string(), host: z.string() }),
  encrypted: z.boolean(),
  devices: z.array(manifestDeviceSchema).min(1),
  /** Segments written for this RP (dedup may also reference segments of earlier RPs). */
  segments: z.array(z.object({ id: hex64, key: z.string(), bytes: count, frames: count })),
  stats: z.object({ scannedBytes: count, changedBytes: count, storedBytes: count, durationMs: count }),
});

export type Manifest = z.infer<typeof manifestSchema>;
export type ManifestDevice = z.infer<typeof manifestDeviceSchema>;

/**
 * A JSON object of the format that does not decode (not JSON, another version, off-schema); the
 * message names the object. A safe-format error wherever it surfaces (exit 4), also where no
 * caller adds more context (policy.json, a compaction's work objects).
 */
export class ManifestFormatError extends CdpError {
  constructor(message: string) {
    super('E_SAFE_FORMAT', message);
  }
}

/** Every JSON object of the format is written this way: one field per line, a final newline. */
export function encodeJson(v: unknown): Buffer {
  return Buffer.from(`${JSON.stringify(v, null, 1)}\n`);
}

export function encodeManifest(m: Manifest): Buffer {
  return encodeJson(m);
}

/** Parses a versioned JSON object of the format: not JSON, another version, or off-schema each get a reason. */
export function decodeVersionedJson<T>(
  schema: z.ZodType<T>,
  buf: Uint8Array,
  where: string,
  what: string,
): T {
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(buf).toString('utf8'));
  } catch {
    throw new ManifestFormatError(`${where}: ${what} is not JSON (truncated?)`);
  }
  const v = (json as { version?: unknown })?.version;
  if (typeof v === 'number' && !READABLE_VERSIONS.includes(v)) {
    throw new ManifestFormatError(
      `${where}: ${what} format version ${v} is not supported (this agent reads ${READABLE_VERSIONS.join(' and ')})`,
    );
  }
  const r = schema.safeParse(json);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new ManifestFormatError(`${where}: invalid ${what} at ${i?.path.join('.')}: ${i?.message}`);
  }
  return r.data;
}

export function decodeManifest(buf: Uint8Array, where: string): Manifest {
  return decodeVersionedJson(manifestSchema, buf, where, 'manifest');
}

export const safeConfigSchema = z.object({
  format: z.literal('cdp-safe'),
  version: readableVersion,
  safe: z.string(),
  createdAt: timestamp,
  /** The agent that owns the safe; another agent refuses to write to it. */
  owner: z.string(),
  encryption: z
    .object({ alg: z.literal('aes-256-gcm+hmac-sha256'), salt: z.string(), keyCheck: z.string() })
    .nullable(),
});

export type SafeConfig = z.infer<typeof safeConfigSchema>;

export function decodeSafeConfig(buf: Uint8Array, where: string): SafeConfig {
  return decodeVersionedJson(safeConfigSchema, buf, where, 'safe');
}
