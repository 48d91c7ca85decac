/**
 * A restore writes over an existing target only when it is recognisably an earlier copy of the
 * device (failback, or a restore being resumed), a blank one (every sampled block zero: nothing to
 * lose), or when told to (--overwrite): a text file, a larger image or another disk given to --to
 * by mistake is refused before a byte is written, and so is the very device the RP was taken from
 * on this host and a block device that is in use.
 *
 * Recognition samples up to 32 of the RP's stored blocks spread over the first plan page, reads the
 * target's blocks at those places and compares their identities (a checksum; keyed in an encrypted
 * safe) with the RP's: at least one in eight must match (an earlier copy shares far more, an
 * unrelated file or disk shares none at the same places).
 */
import { constants } from 'node:fs';
import { open, realpath, stat } from 'node:fs/promises';
import { CdpError } from '#core/errors.ts';
import { blockIdentity, type SafeKeys } from '#core/format/crypto.ts';
import type { RestorePlan } from '#core/restore-plan.ts';
import type { SegmentSource } from './segment-source.ts';

const SAMPLES = 32;

export class TargetRefusedError extends CdpError {
  constructor(to: string, why: string) {
    super(
      'E_USAGE',
      `--to ${to} ${why}`,
      { path: to },
      'pick another --to, or pass --overwrite to replace what is there',
    );
  }
}

export interface TargetCheck {
  readonly to: string;
  readonly overwrite?: boolean;
  /** The path the RP was read from, when it was read on this host. */
  readonly takenFrom?: string;
}

export async function checkTarget(
  c: TargetCheck,
  head: RestorePlan,
  source: SegmentSource,
  keys: SafeKeys | undefined,
): Promise<void> {
  const st = await stat(c.to).catch(() => undefined);
  if (!st || c.overwrite) return;
  if (st.isBlockDevice()) {
    // Linux refuses an exclusive open of a block device that is mounted or held open
    const h = await open(c.to, constants.O_RDONLY | constants.O_EXCL).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'EBUSY')
        throw new TargetRefusedError(c.to, 'is in use (mounted, or open by another program)');
      throw e;
    });
    await h.close();
  } else if (!st.isFile()) throw new TargetRefusedError(c.to, 'is neither a file nor a block device');
  else if (st.size !== head.deviceSize)
    throw new TargetRefusedError(
      c.to,
      `is a file of ${st.size} bytes, and device ${head.device} is ${head.deviceSize}: not an earlier copy of it`,
    );
  if (c.takenFrom) {
    const [a, b] = await Promise.all([realpath(c.to), realpath(c.takenFrom).catch(() => c.takenFrom!)]);
    if (a === b)
      throw new TargetRefusedError(
        c.to,
        `is the device RP ${head.rp} of ${head.device} was taken from: restoring onto it rolls it back`,
      );
  }
  const runs = head.ranges.flatMap((r) => r.runs.map((run) => ({ segment: r.segment, run })));
  const blocks = runs.reduce((n, x) => n + x.run.count, 0);
  if (blocks === 0) return;
  const step = Math.max(1, Math.floor(blocks / SAMPLES));
  const picks: { segment: string; frame: number; block: number }[] = [];
  let seen = 0;
  for (const { segment, run } of runs) {
    for (let i = (step - (seen % step)) % step; i < run.count && picks.length < SAMPLES; i += step)
      picks.push({ segment, frame: run.frame + i, block: run.first + i });
    seen += run.count;
  }
  const fh = await open(c.to, 'r');
  let matching = 0;
  let blank = 0;
  try {
    for (const p of picks) {
      const want = (await source.entries(p.segment))[p.frame];
      if (!want) continue;
      const buf = Buffer.alloc(want.plainLength);
      const { bytesRead } = await fh.read(buf, 0, buf.length, p.block * head.blockSize);
      const got = buf.subarray(0, bytesRead);
      if (got.every((b) => b === 0)) blank++;
      if (bytesRead === want.plainLength && blockIdentity(got, keys?.idKey).equals(want.identity)) matching++;
    }
  } finally {
    await fh.close();
  }
  if (blank === picks.length) return; // a blank target: nothing to lose
  if (matching > 0 && matching * 8 >= picks.length) return;
  throw new TargetRefusedError(
    c.to,
    `does not look like an earlier copy of device ${head.device} (${matching} of ${picks.length} sampled blocks match)`,
  );
}
