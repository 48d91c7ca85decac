/**
 * Where a safe's retention policy lives: `policy.json` in the safe (docs/FORMAT.md §9a.2), read by
 * `cdp-agent compact` onsite and by the compaction Lambda offsite. Without one, nothing expires:
 * compaction then only bounds restore chains and collects garbage.
 */
import { NotFoundError } from '../errors.ts';
import { FORMAT_VERSION } from '../format/constants.ts';
import { decodePolicy, type StoredPolicy } from '../format/generation.ts';
import { encodeJson } from '../format/manifest.ts';
import { policyKey } from '../keys.ts';
import type { ObjectStore } from '../ports/object-store.ts';

/** Keep everything: the policy of a safe that has none. */
export const KEEP_ALL: StoredPolicy = {
  last: 2 ** 31 - 1,
  hourly: 0,
  daily: 0,
  weekly: 0,
  monthly: 0,
  locked: [],
};

export async function readPolicy(store: ObjectStore, safe: string): Promise<StoredPolicy | undefined> {
  const key = policyKey(safe);
  try {
    const { format: _f, version: _v, safe: _s, ...policy } = decodePolicy(await store.get(key), key);
    return policy;
  } catch (e) {
    if (e instanceof NotFoundError) return undefined;
    throw e;
  }
}

export async function writePolicy(store: ObjectStore, safe: string, policy: StoredPolicy): Promise<void> {
  await store.put(
    policyKey(safe),
    encodeJson({ format: 'cdp-policy', version: FORMAT_VERSION, safe, ...policy }),
  );
}
