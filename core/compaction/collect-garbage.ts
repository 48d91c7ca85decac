/**
 * Garbage collection: deletes the objects a generation lists as garbage once their grace period
 * has passed, unless something still references them: the generation's maps and segments, or a
 * recovery point committed after it (a backup may have deduplicated against a retired segment).
 * Deletes nothing else, ever.
 */
import type { Generation } from '../format/generation.ts';
import { blockMapKey, generationKey, manifestKey, segmentKey } from '../keys.ts';
import type { SafeReader } from '../safe-reader.ts';

/** Every key the current view needs: what `gen` references, and every RP committed after it. */
export async function referencedKeys(reader: SafeReader, gen: Generation | undefined): Promise<Set<string>> {
  const keys = new Set<string>();
  if (gen) {
    keys.add(generationKey(reader.safe, gen.generation));
    for (const r of gen.rps) {
      keys.add(manifestKey(reader.safe, r.rp));
      for (const d of r.devices) {
        if (d.blockMap) keys.add(d.blockMap.key);
        for (const p of d.parts ?? []) keys.add(p.blockMap.key);
      }
    }
    for (const s of gen.segments) keys.add(segmentKey(reader.safe, s));
  }
  for (const rp of await reader.listRps()) {
    if (gen && rp <= gen.upTo) continue;
    keys.add(manifestKey(reader.safe, rp));
    const m = await reader.manifest(rp);
    for (const d of m.devices) {
      const link = { rp, full: false, refs: [{ ...d.blockMap, key: blockMapKey(reader.safe, rp, d.id) }] };
      keys.add(link.refs[0]!.key);
      const map = await reader.blockMap(link, d.id);
      for (const e of map.extents) if (e.kind === 'data') keys.add(segmentKey(reader.safe, e.segment));
    }
  }
  return keys;
}

export interface GcResult {
  readonly deleted: readonly string[];
  /** Garbage kept: its grace period has not passed, or something references it again. */
  readonly kept: number;
}

export async function collectGarbage(
  reader: SafeReader,
  gen: Generation | undefined,
  now: Date,
  graceMs: number,
): Promise<GcResult> {
  if (!gen || gen.garbage.length === 0) return { deleted: [], kept: 0 };
  const due = gen.garbage.filter((g) => Date.parse(g.since) + graceMs <= now.getTime());
  if (due.length === 0) return { deleted: [], kept: gen.garbage.length };
  const live = await referencedKeys(reader, gen);
  const deleted: string[] = [];
  for (const g of due) {
    if (live.has(g.key)) continue;
    await reader.store.delete(g.key);
    deleted.push(g.key);
  }
  return { deleted, kept: gen.garbage.length - deleted.length };
}
