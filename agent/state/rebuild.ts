/**
 * Rebuilds local state from the safe alone (the state directory was lost, or is from another
 * RP): the dedup index from segment footers, and a device's change-tracking state from its
 * resolved block map at the last RP. Reads only maps and segment tails, never block data.
 */
import { parseKey, safePrefix } from '#core/keys.ts';
import type { ResolvedDevice, SafeReader } from '#core/safe-reader.ts';
import { CtsWriter } from './change-tracking.ts';
import type { DedupIndex } from './dedup-index.ts';

/** Segment ids of the safe with each object's size. */
export async function listSegmentSizes(reader: SafeReader): Promise<Map<string, number>> {
  const objs = await reader.store.list(`${safePrefix(reader.safe)}seg/`);
  const out = new Map<string, number>();
  for (const o of objs) {
    try {
      const k = parseKey(o.key);
      if (k.kind === 'segment') out.set(k.segment, o.size);
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

/** Writes a device's change-tracking state at `r.rp` from its resolved map (segment footers only). */
export async function rebuildChangeTracking(
  reader: SafeReader,
  r: ResolvedDevice,
  path: string,
): Promise<void> {
  const w = await CtsWriter.create(path, { rp: r.rp, blockSize: r.blockSize, deviceSize: r.deviceSize });
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
