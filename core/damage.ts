/**
 * The frames `verify` found damaged (damage/<segment>/<run>.json records, docs/FORMAT.md §5a): a
 * backup never deduplicates against them and stores the blocks that use them again from the device;
 * a compaction that copies them into a new segment records the damage there too.
 */
import { type DamageRecord, decodeDamageRecord } from './format/damage.ts';
import { encodeJson } from './format/manifest.ts';
import { damageKey, damagePrefix, parseKey } from './keys.ts';
import type { ObjectStore } from './ports/object-store.ts';

export class DamagedFrames {
  private readonly bySegment = new Map<string, [number, number][]>();

  get size(): number {
    return this.bySegment.size;
  }

  add(segment: string, first: number, count: number): void {
    const list = this.bySegment.get(segment) ?? [];
    list.push([first, count]);
    this.bySegment.set(segment, list);
  }

  /** The damaged frame ranges [first, count] of a segment. */
  of(segment: string): readonly (readonly [number, number])[] {
    return this.bySegment.get(segment) ?? [];
  }

  has(segment: string, frame: number): boolean {
    return this.bySegment.get(segment)?.some(([f, c]) => frame >= f && frame < f + c) ?? false;
  }

  /** Whether any frame of [first, first + count) of the segment is damaged. */
  overlaps(segment: string, first: number, count: number): boolean {
    return this.bySegment.get(segment)?.some(([f, c]) => f < first + count && first < f + c) ?? false;
  }
}

/** Every damage record of the safe; a record that cannot be read is skipped (and said so). */
export async function readDamagedFrames(
  store: ObjectStore,
  safe: string,
  log: (msg: string) => void = () => undefined,
): Promise<DamagedFrames> {
  const out = new DamagedFrames();
  for (const o of await store.list(damagePrefix(safe))) {
    try {
      if (parseKey(o.key).kind !== 'damage') continue;
      const r = decodeDamageRecord(await store.get(o.key), o.key);
      for (const f of r.frames) out.add(r.segment, f.first, f.count);
    } catch (e) {
      log(`skipped damage record ${o.key}: ${(e as Error).message}`);
    }
  }
  return out;
}

/**
 * Records damaged frames of `segment` (a new record under `run`, never over another's); true when
 * written, false when the record of this run exists already.
 */
export async function recordDamage(
  store: ObjectStore,
  safe: string,
  run: string,
  record: Omit<DamageRecord, 'format' | 'version'>,
): Promise<boolean> {
  return store.putIfAbsent(
    damageKey(safe, record.segment, run),
    encodeJson({ format: 'cdp-damage', version: 2, ...record }),
  );
}
