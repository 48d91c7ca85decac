/**
 * A compaction generation (docs/FORMAT.md §9a.3): the committed view of every recovery point up to
 * `upTo` after retention and compaction. Written once with putIfAbsent, never changed; the newest
 * generation wins. RPs ≤ upTo that it does not list are expired; RPs > upTo are read from their
 * manifests, whose parent chain joins the generation at `upTo` (always retained).
 */
import { z } from 'zod';
import { DEVICE_ID, LOCK_ID, parseKey, RUN_ID } from '../keys.ts';
import { decodeVersionedJson, readableVersion, timestamp } from './manifest.ts';

const hex64 = z.string().regex(/^[0-9a-f]{64}$/);
const count = z.number().int().nonnegative();

export const blockMapRefSchema = z.object({ key: z.string(), bytes: count, sha256: hex64, extents: count });
export type BlockMapRef = z.infer<typeof blockMapRefSchema>;

export const retentionPolicySchema = z.object({
  last: count,
  hourly: count,
  daily: count,
  weekly: count,
  monthly: count,
  /** RPs kept whatever the policy says, until unlocked. */
  locked: z.array(z.number().int().positive()).default([]),
});
export type StoredPolicy = z.infer<typeof retentionPolicySchema>;

export const generationSchema = z.object({
  format: z.literal('cdp-generation'),
  version: readableVersion,
  safe: z.string(),
  generation: z.number().int().positive(),
  previous: z.number().int().positive().nullable(),
  createdAt: timestamp,
  /** The newest RP this generation covers; always retained. */
  upTo: z.number().int().positive(),
  /** The most deltas any retained RP's chain has below its full map (the bound). */
  maxDeltas: count,
  policy: retentionPolicySchema,
  /** Retained RPs ≤ upTo, oldest first. A device's map is its full map, or its delta from `parent`. */
  rps: z.array(
    z.object({
      rp: z.number().int().positive(),
      createdAt: timestamp,
      parent: z.number().int().positive().nullable(),
      devices: z.array(
        z
          .object({
            id: z.string().regex(DEVICE_ID),
            sizeBytes: count,
            blockSize: count,
            full: z.boolean(),
            /** The map as one object … */
            blockMap: blockMapRefSchema.optional(),
            /** … or as block-range parts (sharded compaction), ascending, covering the device. */
            parts: z.array(z.object({ first: count, end: count, blockMap: blockMapRefSchema })).optional(),
          })
          .refine(
            (d) => (d.blockMap === undefined) !== (d.parts === undefined),
            'exactly one of blockMap and parts',
          ),
      ),
    }),
  ),
  /** Every segment the maps of this generation reference. */
  segments: z.array(hex64),
  /** Segments this compaction wrote (live frames of sparse segments, packed densely). */
  written: z.array(z.object({ id: hex64, key: z.string(), bytes: count, frames: count })),
  /** v2: segments the previous generation listed as garbage that a retained RP references again. */
  revived: z.array(hex64).optional(),
  /**
   * Objects no longer referenced (or never referenced: left by killed runs), deleted once `since` +
   * the grace period has passed, no lock's view is older than `generation` (the generation that
   * condemned the object; absent in v1: this generation's `previous` + 1), and nothing references
   * them again (docs/FORMAT.md §7a).
   */
  garbage: z.array(
    z.object({
      key: z.string(),
      since: z.string(),
      generation: z.number().int().positive().optional(),
      /** v2: listed because nothing referenced it (left by a killed run or a crashed attempt). */
      orphan: z.boolean().optional(),
    }),
  ),
  stats: z.object({
    expired: z.array(z.number().int().positive()),
    mapsWritten: count,
    segmentsRewritten: count,
    bytesRewritten: count,
    /**
     * Informational. A compaction finished by another host measures it from the journal's
     * startedAt, by that host's clock: skewed clocks may make it negative, which is no reason to
     * refuse the generation (and with it the whole safe).
     */
    durationMs: z.number().int(),
  }),
});

/**
 * The kinds of object a compaction lists as garbage (core/compaction/orphans.ts): never safe.json,
 * policy.json, a lock or a damage record, nor anything outside the layout or the safe.
 */
export const GARBAGE_KINDS: ReadonlySet<string> = new Set([
  'manifest',
  'block-map',
  'segment',
  'generation',
  'journal',
  'generation-map',
  'compaction-work',
  'legacy-lease',
]);

/** Why `key` cannot be garbage of generation `g` of safe `safe`, or undefined when it can. */
function notGarbage(key: string, safe: string, g: number): string | undefined {
  let k: ReturnType<typeof parseKey>;
  try {
    k = parseKey(key);
  } catch (e) {
    return (e as Error).message;
  }
  if (k.safe !== safe) return `${key} is an object of safe ${k.safe}`;
  if (!GARBAGE_KINDS.has(k.kind)) return `${key} (${k.kind}) is never garbage`;
  if (k.kind === 'generation' && k.generation >= g) return `${key} is not an older generation`;
  return undefined;
}

/**
 * What every generation a compaction commits holds (core/compaction/plan.ts retentionOf): its
 * retained RPs ascending, each a delta over the one before it (the first over none), the newest
 * being `upTo`; each device of one size and block size throughout; and garbage that only names
 * objects a compaction condemns (GC deletes what it lists). A generation that breaks one was
 * altered, and is refused whole rather than read as a view that expires or rebuilds RPs it never
 * did.
 */
const checkedGenerationSchema = generationSchema.superRefine((gen, ctx) => {
  const issue = (path: (string | number)[], message: string) =>
    ctx.addIssue({ code: 'custom', path, message });
  gen.rps.forEach((r, i) => {
    const before = i > 0 ? gen.rps[i - 1]!.rp : null;
    if (before !== null && r.rp <= before) issue(['rps', i, 'rp'], `RP ${r.rp} follows RP ${before}`);
    if (r.parent !== before)
      issue(
        ['rps', i, 'parent'],
        `RP ${r.rp} has parent ${r.parent}, the RP retained before it is ${before}`,
      );
  });
  // a device keeps its size and block size from its first backup on
  const geometry = new Map<string, { rp: number; sizeBytes: number; blockSize: number }>();
  gen.rps.forEach((r, i) => {
    r.devices.forEach((d, j) => {
      const first = geometry.get(d.id);
      if (!first) geometry.set(d.id, { rp: r.rp, sizeBytes: d.sizeBytes, blockSize: d.blockSize });
      else if (first.sizeBytes !== d.sizeBytes || first.blockSize !== d.blockSize)
        issue(
          ['rps', i, 'devices', j],
          `device ${d.id} is ${d.sizeBytes} bytes in ${d.blockSize}-byte blocks at RP ${r.rp}, ${first.sizeBytes} in ${first.blockSize} at RP ${first.rp}`,
        );
    });
  });
  const newest = gen.rps[gen.rps.length - 1]?.rp;
  if (newest !== gen.upTo) issue(['upTo'], `upTo is ${gen.upTo}, the newest RP retained is ${newest}`);
  gen.garbage.forEach((entry, i) => {
    const why = notGarbage(entry.key, gen.safe, gen.generation);
    if (why) issue(['garbage', i, 'key'], why);
  });
});

export type Generation = z.infer<typeof generationSchema>;
export type GenerationRp = Generation['rps'][number];

export function decodeGeneration(buf: Uint8Array, where: string): Generation {
  return decodeVersionedJson(checkedGenerationSchema, buf, where, 'generation');
}

export const policyFileSchema = retentionPolicySchema.extend({
  format: z.literal('cdp-policy'),
  version: readableVersion,
  safe: z.string(),
});

export function decodePolicy(buf: Uint8Array, where: string): z.infer<typeof policyFileSchema> {
  return decodeVersionedJson(policyFileSchema, buf, where, 'retention policy');
}

export const journalSchema = z.object({
  format: z.literal('cdp-journal'),
  version: readableVersion,
  generation: z.number().int().positive(),
  /** v2: this attempt's id (its objects live under gen/<g>/<attempt>/), and the lock it ran under. */
  attempt: z.string().regex(RUN_ID).optional(),
  lock: z.string().regex(LOCK_ID).optional(),
  /** v2: the generation the attempt planned on (null: none); it commits only while that is the newest. */
  previous: z.number().int().positive().nullable().optional(),
  /** When the attempt began (a time: a finisher measures the compaction's duration from it). */
  startedAt: z.string().refine((t) => !Number.isNaN(Date.parse(t)), 'not a time'),
  owner: z.string(),
  /** The plan's inputs, so the finalizer (maybe another invocation) plans the same again. */
  upTo: z.number().int().positive(),
  policy: retentionPolicySchema,
  maxDeltas: count,
  rewriteBelow: z.number().min(0).max(1),
  /** Garbage the planner already deleted (not carried into the new generation). */
  deleted: z.array(z.string()),
  /** Block-range shards the planning and map writing are split into. */
  shards: z.array(z.object({ device: z.string(), first: count, end: count })),
  /** Retention's verdict: the RPs kept (with their parent in the new generation) and those merged. */
  kept: z.array(
    z.object({
      rp: z.number().int().positive(),
      createdAt: timestamp,
      parent: z.number().int().positive().nullable(),
    }),
  ),
  expired: z.array(z.number().int().positive()),
});
export type Journal = z.infer<typeof journalSchema>;

/** `gen/<g>/rewrite.json`: the segments this attempt writes, chosen once every shard's liveness is in. */
export const rewritePlanSchema = z.object({
  format: z.literal('cdp-rewrite'),
  version: readableVersion,
  generation: z.number().int().positive(),
  /** Each output packs the live frames of its sources, in order. */
  outputs: z.array(
    z.object({
      id: hex64,
      key: z.string(),
      /** Live frame ranges [first, count] of each source, ascending. */
      sources: z.array(
        z.object({ segment: hex64, live: z.array(z.tuple([count, z.number().int().positive()])) }),
      ),
    }),
  ),
});
export type RewritePlan = z.infer<typeof rewritePlanSchema>;

export function decodeRewritePlan(buf: Uint8Array, where: string): RewritePlan {
  return decodeVersionedJson(rewritePlanSchema, buf, where, 'rewrite plan');
}

/** A shard's liveness (`live-<i>.json`): frame ranges per segment, and what the old view referenced. */
export const shardLivenessSchema = z.object({
  segments: z.record(hex64, z.array(z.tuple([count, z.number().int().positive()]))),
  oldRefs: z.array(z.string()),
  oldSegments: z.array(hex64),
  /** Retained maps of the shard that cannot be reused as they are. */
  changes: count,
});
export type ShardLiveness = z.infer<typeof shardLivenessSchema>;

/** A shard's maps (`maps-<i>.json`): per retained RP, the part it wrote or reuses, or the whole map it reuses. */
export const shardMapsSchema = z.object({
  maps: z.array(
    z.object({
      rp: z.number().int().positive(),
      device: z.string(),
      sizeBytes: count,
      blockSize: count,
      full: z.boolean(),
      first: count,
      end: count,
      whole: blockMapRefSchema.optional(),
      part: blockMapRefSchema.optional(),
    }),
  ),
});
export type ShardMaps = z.infer<typeof shardMapsSchema>;

export function decodeJournal(buf: Uint8Array, where: string): Journal {
  return decodeVersionedJson(journalSchema, buf, where, 'compaction journal');
}
