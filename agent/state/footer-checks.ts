/**
 * Which segment footers this agent has read and found sound, with the segment's size then
 * (`checked-footers.txt`: one `<id> <size>` line each). A backup checks the segments its parent's
 * chain uses cheaply from this: every one must still be listed with that size (a truncated or
 * replaced segment is caught without a read); footers never checked are read now, and so are up to
 * `recheck` already checked ones chosen at random, so damage after a check is found in time.
 */
import { appendFileSync, readFileSync } from 'node:fs';

export class FooterChecks {
  private readonly file: string | undefined;
  private readonly sizes = new Map<string, number>();

  constructor(file?: string) {
    this.file = file;
    if (!file) return;
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      return;
    }
    for (const line of text.split('\n')) {
      const [id, size] = line.split(' ');
      if (id && /^[0-9a-f]{64}$/.test(id) && size && /^\d+$/.test(size)) this.sizes.set(id, Number(size));
    }
  }

  /** The size the segment had when its footer was checked, or undefined if never checked. */
  checkedSize(id: string): number | undefined {
    return this.sizes.get(id);
  }

  /** Of `ids`: every one never checked, and up to `recheck` checked ones picked at random. */
  toRead(ids: readonly string[], recheck: number): string[] {
    const fresh = ids.filter((id) => !this.sizes.has(id));
    const checked = ids.filter((id) => this.sizes.has(id));
    for (let i = checked.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [checked[i], checked[j]] = [checked[j]!, checked[i]!];
    }
    return [...fresh, ...checked.slice(0, recheck)];
  }

  /** Records a sound footer (persisted at once). */
  mark(id: string, size: number): void {
    if (this.sizes.get(id) === size) return;
    this.sizes.set(id, size);
    if (this.file) appendFileSync(this.file, `${id} ${size}\n`);
  }
}
