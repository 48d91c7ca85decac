/**
 * Before a backup builds a device's delta on its parent RP it checks that chain, cheaply (docs/FORMAT.md
 * §7): the manifests and block maps exist and match their recorded sizes and SHA-256 (reading the
 * maps, never block data), every segment they use is listed with the size its footer had when
 * checked, footers never checked are read (and a few checked ones again), every frame the maps
 * name is inside its segment. A chain that fails is not built on: the device is read in full again.
 * Blocks whose stored frame `verify` found damaged are named, so the backup stores them again.
 */
import { mapLimit } from '#core/concurrency.ts';
import type { DamagedFrames } from '#core/damage.ts';
import { CdpError } from '#core/errors.ts';
import type { ResolvedDevice, SafeReader } from '#core/safe-reader.ts';
import type { FooterChecks } from '../state/footer-checks.ts';

export type ChainCheck =
  | {
      readonly ok: true;
      readonly parent: ResolvedDevice;
      /** Block ranges [first, count] whose frames are known damaged: read them from the device again. */
      readonly heal: readonly (readonly [number, number])[];
    }
  | {
      readonly ok: false;
      readonly reason: string /** The segment found bad, if a segment was. */;
      readonly segment?: string;
    };

/** Footers of already-checked segments read again per device and run. */
export const FOOTER_RECHECKS = 16;

export async function checkChain(
  reader: SafeReader,
  parent: number,
  device: string,
  listed: ReadonlyMap<string, number>,
  footers: FooterChecks,
  damaged: DamagedFrames,
): Promise<ChainCheck> {
  let resolved: ResolvedDevice;
  try {
    resolved = await reader.resolve(parent, device);
  } catch (e) {
    if (e instanceof CdpError) return { ok: false, reason: e.message };
    throw e;
  }
  const need = new Map<string, number>();
  for (const e of resolved.extents)
    if (e.kind === 'data') need.set(e.segment, Math.max(need.get(e.segment) ?? 0, e.frame + e.count));
  for (const id of need.keys()) {
    const size = listed.get(id);
    if (size === undefined) return { ok: false, reason: `segment ${id} of its chain is missing` };
    const checked = footers.checkedSize(id);
    if (checked !== undefined && checked !== size)
      return {
        ok: false,
        reason: `segment ${id} of its chain is ${size} bytes, ${checked} when it was checked`,
      };
  }
  let failure: { reason: string; segment: string } | undefined;
  await mapLimit(footers.toRead([...need.keys()], FOOTER_RECHECKS), 8, async (id) => {
    try {
      const entries = await reader.segmentEntries(id);
      if (entries.length < need.get(id)!)
        failure ??= {
          reason: `segment ${id} of its chain has ${entries.length} frames, its maps use ${need.get(id)}`,
          segment: id,
        };
      else footers.mark(id, listed.get(id)!);
    } catch (e) {
      if (!(e instanceof CdpError)) throw e;
      failure ??= { reason: e.message, segment: id };
    }
  });
  if (failure) return { ok: false, ...failure };
  const heal: [number, number][] = [];
  if (damaged.size > 0) {
    for (const e of resolved.extents) {
      if (e.kind !== 'data' || !damaged.overlaps(e.segment, e.frame, e.count)) continue;
      for (let i = 0; i < e.count; i++) {
        if (!damaged.has(e.segment, e.frame + i)) continue;
        const last = heal[heal.length - 1];
        if (last && last[0] + last[1] === e.first + i) last[1]++;
        else heal.push([e.first + i, 1]);
      }
    }
  }
  return { ok: true, parent: resolved, heal };
}
