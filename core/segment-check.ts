/**
 * Checks a whole segment held in memory (a replication copies segments whole, so it checks what it
 * copies): the header, the footer and its binding (the segment id and safe asked for), every
 * frame the index lists (its header where the index says, with the index's identity and lengths),
 * and, with the safe's keys or in an unencrypted safe, every block decoded and its checksum (and
 * AES-GCM tag) verified. Without the key of an encrypted safe only the structure can be checked.
 *
 * `rebind` gives the same segment under another id: the frames byte for byte, a new footer.
 */
import { CdpError } from './errors.ts';
import type { SafeKeys } from './format/crypto.ts';
import { FrameError, readFrameHeader } from './format/frame.ts';
import { decodeFrameAsync } from './format/frame-async.ts';
import {
  parseSegmentHeader,
  parseSegmentIndex,
  type SegmentBinding,
  type SegmentEntry,
  SegmentFormatError,
  segmentFooter,
  segmentHeader,
  splitSegmentFooter,
} from './format/segment.ts';

export class DamagedSegmentError extends CdpError {
  constructor(segment: string, reason: string, frame?: number) {
    super(
      'E_DAMAGED',
      `segment ${segment}${frame !== undefined ? ` frame ${frame}` : ''}: ${reason}`,
      { segment, ...(frame !== undefined ? { frame } : {}) },
      'the source copy is damaged: repair it from another replica, or back the device up again',
    );
  }
}

export interface CheckedSegment {
  readonly entries: SegmentEntry[];
  readonly encrypted: boolean;
  readonly indexOffset: number;
  /** Whether every block was decoded and checked (false: the structure only, no key). */
  readonly blocksChecked: boolean;
}

export async function checkSegmentBytes(
  buf: Buffer,
  expect: SegmentBinding,
  keys: SafeKeys | undefined,
): Promise<CheckedSegment> {
  const bad = (reason: string, frame?: number) => new DamagedSegmentError(expect.segment, reason, frame);
  let encrypted: boolean;
  let entries: SegmentEntry[];
  let indexOffset: number;
  try {
    encrypted = parseSegmentHeader(buf).encrypted;
    const { trailer, index } = splitSegmentFooter(buf, buf.length);
    indexOffset = trailer.indexOffset;
    entries = parseSegmentIndex(
      index ?? buf.subarray(trailer.indexOffset, trailer.indexOffset + trailer.indexLength),
      trailer,
      expect,
    );
  } catch (e) {
    if (e instanceof SegmentFormatError) throw bad(e.message);
    throw e;
  }
  const canDecode = !encrypted || keys !== undefined;
  const opts = { dataKey: keys?.dataKey, idKey: keys?.idKey };
  const BATCH = 32;
  for (let i = 0; i < entries.length; i += BATCH) {
    await Promise.all(
      entries.slice(i, i + BATCH).map(async (e, k) => {
        const frame = i + k;
        try {
          const h = readFrameHeader(buf, e.offset);
          if (44 + h.payloadLength !== e.frameLength)
            throw new FrameError(`frame length ${44 + h.payloadLength}, the index says ${e.frameLength}`);
          if (h.plainLength !== e.plainLength)
            throw new FrameError(`block length ${h.plainLength}, the index says ${e.plainLength}`);
          if (!h.identity.equals(e.identity)) throw new FrameError('frame does not match the segment index');
          if (h.encrypted !== encrypted)
            throw new FrameError('encryption flag differs from the segment header');
          if (canDecode) await decodeFrameAsync(buf, e.offset, opts);
        } catch (err) {
          if (err instanceof FrameError) throw bad(err.message, frame);
          throw err;
        }
      }),
    );
  }
  return { entries, encrypted, indexOffset, blocksChecked: canDecode };
}

/** The segment `checked` (whose bytes are `buf`) under the id `binding.segment`: same frames, new header and footer. */
export function rebind(buf: Buffer, checked: CheckedSegment, binding: SegmentBinding): Buffer {
  const header = segmentHeader(checked.encrypted);
  return Buffer.concat([
    header,
    buf.subarray(header.length, checked.indexOffset),
    segmentFooter(checked.entries, checked.indexOffset, binding),
  ]);
}
