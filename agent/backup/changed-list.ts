/**
 * Changed-block input (docs/FORMAT.md "Changed-extent lists"): instead of reading a whole device,
 * an incremental backup reads only the extents an external tracker says changed since the parent
 * RP. Two formats, told apart by their first character:
 *
 *   extent list (text)   one extent per line: `<offset> <length>` in bytes, decimal or 0x hex;
 *                        blank lines and `#` comments ignored
 *   LVM thin_delta XML   the output of `thin_delta --snap1 <old> --snap2 <new> <metadata dev>`:
 *                        <superblock data_block_size="S"> … <different|right_only|left_only
 *                        begin="B" length="L"/> in data blocks of S 512-byte sectors
 *
 * Blocks outside the list are taken as unchanged: the tracker must cover every write since the
 * parent RP (a full scan without a list is always safe).
 */
import { readFileSync } from 'node:fs';
import { CdpError } from '#core/errors.ts';

/** [offset, length] in bytes. */
export type ByteExtent = readonly [number, number];

export class ChangedListError extends CdpError {
  constructor(where: string, reason: string) {
    super('E_USAGE', `changed list ${where}: ${reason}`, {}, 'see docs/FORMAT.md "Changed-extent lists"');
  }
}

const num = (s: string): number => (s.startsWith('0x') ? Number.parseInt(s.slice(2), 16) : Number(s));

export function parseExtentList(text: string, where: string): ByteExtent[] {
  const out: ByteExtent[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) return;
    const m = /^(0x[0-9a-fA-F]+|\d+)\s+(0x[0-9a-fA-F]+|\d+)$/.exec(line);
    if (!m)
      throw new ChangedListError(where, `line ${i + 1}: expected '<offset> <length>', got '${raw.trim()}'`);
    const off = num(m[1]!);
    const len = num(m[2]!);
    if (!Number.isSafeInteger(off) || !Number.isSafeInteger(len)) {
      throw new ChangedListError(where, `line ${i + 1}: number out of range`);
    }
    if (len > 0) out.push([off, len]);
  });
  return out;
}

export function parseThinDelta(xml: string, where: string): ByteExtent[] {
  const sb = /<superblock\b[^>]*\bdata_block_size="(\d+)"/.exec(xml);
  if (!sb) throw new ChangedListError(where, 'thin_delta output without <superblock data_block_size=…>');
  const unit = Number(sb[1]) * 512;
  const out: ByteExtent[] = [];
  for (const m of xml.matchAll(
    /<(different|right_only|left_only)\b[^>]*?\bbegin="(\d+)"[^>]*?\blength="(\d+)"/g,
  )) {
    out.push([Number(m[2]) * unit, Number(m[3]) * unit]);
  }
  return out;
}

/** Reads a changed list file in either format. */
export function loadChangedList(path: string): ByteExtent[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ChangedListError(
      path,
      `cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
    );
  }
  return text.trimStart().startsWith('<') ? parseThinDelta(text, path) : parseExtentList(text, path);
}

/** The sorted, distinct chunk numbers the extents touch, for chunks of `chunk` bytes. */
export function chunksTouched(extents: readonly ByteExtent[], chunk: number, size: number): number[] {
  const set = new Set<number>();
  const last = Math.ceil(size / chunk) - 1;
  for (const [off, len] of extents) {
    if (off >= size) continue;
    const first = Math.floor(off / chunk);
    const end = Math.min(last, Math.floor((Math.min(off + len, size) - 1) / chunk));
    for (let c = first; c <= end; c++) set.add(c);
  }
  return [...set].sort((a, b) => a - b);
}
