/**
 * Objects of the safe that nothing references and that are not yet garbage: segments and block maps
 * of backup runs that were killed or lost a race, the objects of crashed compaction attempts, old
 * generations, v1's lease. A compaction lists them as garbage of the generation it commits; they are
 * deleted later under the same rules as any garbage (docs/FORMAT.md §7a), so an object a live
 * writer is still about to commit is safe: the writer's lock view predates that generation.
 *
 * Only keys of the layout's own kinds are considered: safe.json, policy.json, locks, damage records
 * and anything that does not parse are never garbage.
 */
import { GARBAGE_KINDS, type Generation } from '../format/generation.ts';
import { parseKey, safePrefix } from '../keys.ts';
import type { ObjectStore } from '../ports/object-store.ts';

/** Every collectable key of the safe, as listed now (list before computing references). */
export async function collectableKeys(store: ObjectStore, safe: string): Promise<string[]> {
  const out: string[] = [];
  for (const o of await store.list(safePrefix(safe))) {
    try {
      if (GARBAGE_KINDS.has(parseKey(o.key).kind)) out.push(o.key);
    } catch {
      /* not ours: never touched */
    }
  }
  return out;
}

/** The keys of `listed` that are neither referenced, nor garbage already, nor kept by the caller. */
export function orphansOf(
  listed: readonly string[],
  referenced: ReadonlySet<string>,
  gen: Generation | undefined,
  keep: (key: string) => boolean,
): string[] {
  const garbage = new Set((gen?.garbage ?? []).map((g) => g.key));
  return listed.filter((k) => !referenced.has(k) && !garbage.has(k) && !keep(k));
}
