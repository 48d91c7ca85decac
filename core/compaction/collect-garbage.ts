/**
 * Garbage collection (docs/FORMAT.md §7a): deletes the objects the current generation lists as
 * garbage once (1) their grace period has passed, (2) every live write or read lock's view already
 * includes the generation that condemned them (an older view may still use them), and (3) nothing
 * references them again: the view's maps and segments, or an RP committed after it. Runs only under
 * a valid compact lock, and checks it before deleting. Deletes nothing else, ever.
 */
import type { Generation } from '../format/generation.ts';
import { generationKey, manifestKey, segmentKey } from '../keys.ts';
import { type HeldLock, liveViews } from '../locks.ts';
import { manifestMapRef, type SafeReader } from '../safe-reader.ts';

/** Every key the generation itself references: its own object, retained manifests, maps, segments. */
export function viewKeys(safe: string, gen: Generation | undefined): Set<string> {
  const keys = new Set<string>();
  if (!gen) return keys;
  keys.add(generationKey(safe, gen.generation));
  for (const r of gen.rps) {
    keys.add(manifestKey(safe, r.rp));
    for (const d of r.devices) {
      if (d.blockMap) keys.add(d.blockMap.key);
      for (const p of d.parts ?? []) keys.add(p.blockMap.key);
    }
  }
  for (const s of gen.segments) keys.add(segmentKey(safe, s));
  return keys;
}

/** An RP committed after the view that cannot be read: nothing it may reference is known. */
export class UnreadableRpError extends Error {}

/** The manifests of the RPs committed after `upTo`, their maps, and the segments those reference. */
export async function laterRpKeys(reader: SafeReader, upTo: number): Promise<Set<string>> {
  const keys = new Set<string>();
  for (const rp of await reader.listRps()) {
    if (rp <= upTo) continue;
    keys.add(manifestKey(reader.safe, rp));
    try {
      const m = await reader.manifest(rp);
      for (const d of m.devices) {
        const ref = manifestMapRef(reader.safe, m, d);
        keys.add(ref.key);
        const map = await reader.blockMap({ rp, full: false, refs: [ref] }, d.id);
        for (const e of map.extents) if (e.kind === 'data') keys.add(segmentKey(reader.safe, e.segment));
      }
    } catch (e) {
      throw new UnreadableRpError(
        `RP ${rp} cannot be read (${(e as Error).message}): garbage collection deletes nothing until it is repaired or removed`,
      );
    }
  }
  return keys;
}

/** Every key the current view needs: what `gen` references, and every RP committed after it. */
export async function referencedKeys(reader: SafeReader, gen: Generation | undefined): Promise<Set<string>> {
  const keys = viewKeys(reader.safe, gen);
  for (const k of await laterRpKeys(reader, gen?.upTo ?? 0)) keys.add(k);
  return keys;
}

export interface GcResult {
  readonly deleted: readonly string[];
  /** Garbage kept: its grace period has not passed, a lock's view predates it, or it is referenced again. */
  readonly kept: number;
  /** Why garbage that was due was kept (for the log). */
  readonly held: readonly string[];
}

/** The generation that condemned a garbage entry (v1 entries: the generation that lists it). */
export function condemnedIn(entry: Generation['garbage'][number], gen: Generation): number {
  return entry.generation ?? gen.generation;
}

export async function collectGarbage(
  reader: SafeReader,
  gen: Generation | undefined,
  now: Date,
  graceMs: number,
  lock: HeldLock,
): Promise<GcResult> {
  if (!gen || gen.garbage.length === 0) return { deleted: [], kept: 0, held: [] };
  const due = gen.garbage.filter((g) => Date.parse(g.since) + graceMs <= now.getTime());
  if (due.length === 0) return { deleted: [], kept: gen.garbage.length, held: [] };
  // the locks first, then the references: a writer that has released its lock has committed
  const views = liveViews(await lock.others());
  const oldestView = views.length > 0 ? Math.min(...views) : Number.POSITIVE_INFINITY;
  let live: Set<string>;
  try {
    live = await referencedKeys(reader, gen);
  } catch (e) {
    if (e instanceof UnreadableRpError) return { deleted: [], kept: gen.garbage.length, held: [e.message] };
    throw e;
  }
  const deleted: string[] = [];
  const held: string[] = [];
  for (const g of due) {
    const c = condemnedIn(g, gen);
    if (c > oldestView) {
      held.push(
        `${g.key}: a lock's view (generation ${oldestView}) predates generation ${c}, which condemned it`,
      );
      continue;
    }
    if (live.has(g.key)) continue;
    await lock.check();
    await reader.store.delete(g.key);
    deleted.push(g.key);
  }
  return { deleted, kept: gen.garbage.length - deleted.length, held };
}
