/**
 * Rebuilds local state from the safe alone (the state directory was lost, or is from another
 * RP): the dedup index from segment footers, and a device's change-tracking state from its
 * resolved block map at the last RP. Reads only maps and segment tails, never block data.
 */
import { parseKey, safePrefix } from '#core/keys.ts';
import type { SafeReader } from '#core/safe-reader.ts';
import { CtsWriter } from './change-tracking.ts';
import type { DedupIndex } from './dedup-index.ts';

/** Ids of every segment object in the safe. */
export async function listSegments(reader: SafeReader): Promise<Set<string>> {
  const objs = await reader.store.list(`${safePrefix(reader.safe)}seg/`);
  const out = new Set<string>();
  for (const o of objs) {
    try {
      const k = parseKey(o.key);
      if (k.kind === 'segment') out.add(k.segment);
    } catch {
      /* not ours: ignore */
    }
  }
  return out;
}

export async function rebuildDedupIndex(
  reader: SafeReader,
  index: DedupIndex,
  segments: Iterable<string>,
): Promise<void> {
  index.clear();
  for (const s of segments) {
    const entries = await reader.segmentEntries(s).catch(() => undefined);
    if (entries)
      index.addSegment(
        s,
        entries.map((e) => e.identity),
      );
  }
}

export async function rebuildChangeTracking(
  reader: SafeReader,
  rp: number,
  device: string,
  path: string,
): Promise<void> {
  const r = await reader.resolve(rp, device);
  const w = await CtsWriter.create(path, { rp, blockSize: r.blockSize, deviceSize: r.deviceSize });
  try {
    for (const e of r.extents) {
      if (e.kind === 'zero') continue;
      const entries = await reader.segmentEntries(e.segment);
      const state = Buffer.alloc(e.count * 8);
      for (let i = 0; i < e.count; i++) entries[e.frame + i]!.identity.copy(state, i * 8, 0, 8);
      await w.write(e.first, state);
    }
    await w.commit();
  } catch (e) {
    await w.discard();
    throw e;
  }
}
