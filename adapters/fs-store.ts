/**
 * ObjectStore on a local directory (a primary onsite safe, or a NAS mount). The safe at
 * `/backups/db1` holds the keys `safes/db1/<rest>` as files `/backups/db1/<rest>`. Writes go to a
 * temporary file, are fsynced, then renamed (or hard-linked, for putIfAbsent) into place.
 */
import { randomBytes } from 'node:crypto';
import { constants, type Dirent } from 'node:fs';
import {
  type FileHandle,
  link,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  stat,
  unlink,
} from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { viewOf } from '#core/bytes.ts';
import { CdpError, NotFoundError } from '#core/errors.ts';
import { safePrefix } from '#core/keys.ts';
import type { ObjectInfo, ObjectStore, ObjectTail, ObjectWriter } from '#core/ports/object-store.ts';
import { bootTag } from '#core/process-identity.ts';
import { openDirect } from './direct-io.ts';
import { StagedFileWriter } from './staged-file-writer.ts';

function isNotFound(e: unknown): boolean {
  return (e as NodeJS.ErrnoException)?.code === 'ENOENT';
}

/** The safe's storage is full (ENOSPC) or over quota (EDQUOT). */
export class StorageFullError extends CdpError {
  constructor(location: string, key: string, cause: unknown) {
    super(
      'E_NO_SPACE',
      `no space left on ${location} (${(cause as NodeJS.ErrnoException).code}) while writing ${key}`,
      { key, path: location },
      "free space on the safe's filesystem (or move the safe), then run again: nothing partial was kept",
      { cause },
    );
  }
}

function isFull(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/**
 * Temporary files are named `<final>.tmp-<boot tag>-<pid>-<random>`, so a later run can tell the
 * files of a process of this boot that no longer runs (a killed writer) and remove them.
 */
function tempName(final: string): string {
  return `${final}.tmp-${bootTag()}-${process.pid}-${randomBytes(6).toString('hex')}`;
}

/** A temporary file's name: this format's, or v1's `.tmp-<12 hex>`; no key of the layout ends so. */
const TEMP = /\.tmp-(?:([0-9a-f]{8})-(\d+)-)?[0-9a-f]{12}$/;

function pidRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const h = await open(dir, 'r');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}

export class FsObjectStore implements ObjectStore {
  readonly location: string;
  private readonly prefix: string;

  /** `dir` is the safe's directory; `safe` its id. */
  constructor(dir: string, safe: string) {
    this.location = dir;
    this.prefix = safePrefix(safe);
  }

  /** The file that holds `key` (a restore's workers read segment files themselves). */
  filePath(key: string): string {
    return this.path(key);
  }

  private path(key: string): string {
    if (!key.startsWith(this.prefix)) throw new Error(`key ${key} is not in safe ${this.prefix}`);
    const rest = key.slice(this.prefix.length);
    if (rest.split('/').some((p) => p === '..' || p === '.' || p === '')) throw new Error(`bad key ${key}`);
    return join(this.location, ...rest.split('/'));
  }

  async get(key: string): Promise<Buffer> {
    try {
      return await readFile(this.path(key));
    } catch (e) {
      if (isNotFound(e)) throw new NotFoundError(`object ${key}`, { key, path: this.location });
      throw e;
    }
  }

  /** The object's file, open for reading; NotFoundError when there is none. */
  private async openObject(key: string): Promise<FileHandle> {
    try {
      return await open(this.path(key), 'r');
    } catch (e) {
      if (isNotFound(e)) throw new NotFoundError(`object ${key}`, { key, path: this.location });
      throw e;
    }
  }

  async getRange(key: string, offset: number, length: number, into?: Uint8Array): Promise<Buffer> {
    const h = await this.openObject(key);
    try {
      const buf = into ? viewOf(into, length) : Buffer.allocUnsafe(length);
      let got = 0;
      while (got < length) {
        const { bytesRead } = await h.read(buf, got, length - got, offset + got);
        if (bytesRead === 0)
          throw new Error(`${key}: range ${offset}+${length} is past the end of the object`);
        got += bytesRead;
      }
      return buf;
    } finally {
      await h.close();
    }
  }

  async getTail(key: string, length: number): Promise<ObjectTail> {
    const h = await this.openObject(key);
    try {
      const { size } = await h.stat();
      const n = Math.min(length, size);
      const bytes = Buffer.allocUnsafe(n);
      let got = 0;
      while (got < n) {
        const { bytesRead } = await h.read(bytes, got, n - got, size - n + got);
        if (bytesRead === 0) throw new Error(`${key}: shrank while reading its last ${n} bytes`);
        got += bytesRead;
      }
      return { bytes, size };
    } finally {
      await h.close();
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    try {
      const s = await stat(this.path(key));
      return { key, size: s.size, modified: s.mtime, version: String(s.ino) };
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  /**
   * Writes the same bytes over the file in place: the file system stamps the modification time
   * with its own clock (a NAS server's, not this host's), as it did when the file was created.
   * Only while the file still exists and holds `body` (it is never recreated); `version` (the
   * inode) is returned as it is.
   */
  async restamp(key: string, body: Uint8Array, _version: string): Promise<string | undefined> {
    const path = this.path(key);
    let h: FileHandle;
    try {
      h = await open(path, 'r+');
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
    try {
      const st = await h.stat();
      if (st.size !== body.length) return undefined;
      const now = Buffer.alloc(body.length);
      await h.read(now, 0, body.length, 0);
      if (!now.equals(body)) return undefined;
      await h.write(body, 0, body.length, 0);
      await h.sync();
      return String(st.ino);
    } finally {
      await h.close();
    }
  }

  private async writeTemp(key: string, body: Uint8Array): Promise<string> {
    const final = this.path(key);
    try {
      await mkdir(dirname(final), { recursive: true });
    } catch (e) {
      if (isFull(e)) throw new StorageFullError(this.location, key, e);
      throw e;
    }
    const tmp = tempName(final);
    try {
      const h = await open(tmp, 'wx');
      try {
        await h.writeFile(body);
        await h.sync();
      } finally {
        await h.close();
      }
    } catch (e) {
      await unlink(tmp).catch(() => undefined);
      if (isFull(e)) throw new StorageFullError(this.location, key, e);
      throw e;
    }
    return tmp;
  }

  async put(key: string, body: Uint8Array): Promise<void> {
    const tmp = await this.writeTemp(key, body);
    await rename(tmp, this.path(key));
    await fsyncDir(dirname(this.path(key)));
  }

  async putIfAbsent(key: string, body: Uint8Array): Promise<boolean> {
    const tmp = await this.writeTemp(key, body);
    try {
      await link(tmp, this.path(key));
      await fsyncDir(dirname(this.path(key)));
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
      if (isFull(e)) throw new StorageFullError(this.location, key, e);
      throw e;
    } finally {
      await unlink(tmp);
    }
  }

  async delete(key: string): Promise<void> {
    const path = this.path(key);
    try {
      await unlink(path);
    } catch (e) {
      if (isNotFound(e)) return;
      throw e;
    }
    await fsyncDir(dirname(path));
  }

  async cleanTemporaries(before: Date): Promise<number> {
    const mine = bootTag();
    let removed = 0;
    const walk = async (dir: string): Promise<void> => {
      let entries: Dirent[];
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (e) {
        if (isNotFound(e)) return;
        throw e;
      }
      for (const d of entries) {
        const p = join(dir, d.name);
        if (d.isDirectory()) {
          await walk(p);
          continue;
        }
        const m = TEMP.exec(d.name);
        if (!m) continue;
        const abandoned = m[1] === mine && Number(m[2]) !== process.pid && !pidRuns(Number(m[2]));
        const old = abandoned || ((await stat(p).catch(() => undefined))?.mtime ?? before) < before;
        if (old) {
          await unlink(p).catch(() => undefined);
          removed++;
        }
      }
    };
    await walk(this.location);
    return removed;
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    if (!prefix.startsWith(this.prefix)) return [];
    const out: ObjectInfo[] = [];
    const walk = async (dir: string): Promise<void> => {
      let names: string[];
      try {
        names = await readdir(dir);
      } catch (e) {
        if (isNotFound(e)) return;
        throw e;
      }
      for (const n of names) {
        if (TEMP.test(n)) continue; // a write in progress (or left by a crash)
        const p = join(dir, n);
        const rel = relative(this.location, p).split(sep).join('/');
        const key = this.prefix + rel;
        // only what can lie under the prefix: a folder on its way there, or an object in it
        if (!key.startsWith(prefix) && !prefix.startsWith(`${key}/`)) continue;
        let s: Awaited<ReturnType<typeof stat>>;
        try {
          s = await stat(p);
        } catch (e) {
          if (isNotFound(e)) continue; // removed while we walked
          throw e;
        }
        if (s.isDirectory()) await walk(p);
        else if (key.startsWith(prefix)) out.push({ key, size: s.size, modified: s.mtime });
      }
    };
    // start in the deepest folder the prefix names
    const rest = prefix.slice(this.prefix.length);
    const folder = rest.includes('/') ? rest.slice(0, rest.lastIndexOf('/')) : '';
    await walk(folder ? join(this.location, ...folder.split('/')) : this.location);
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  /**
   * Segments are written through StagedFileWriter: direct I/O where the filesystem allows (a
   * backup's segments are not read back soon; skipping the page cache halves a full backup's
   * kernel time here), with writes in flight while the next bytes are staged.
   */
  openWriter(key: string): ObjectWriter {
    const final = this.path(key);
    const tmp = tempName(final);
    const location = this.location;
    let opened: Promise<{ fh: FileHandle; direct?: FileHandle; writer: StagedFileWriter }> | undefined;
    const h = () => {
      opened ??= (async () => {
        await mkdir(dirname(final), { recursive: true });
        const fh = await open(tmp, 'wx');
        const direct = await openDirect(tmp, constants.O_WRONLY);
        return { fh, direct, writer: new StagedFileWriter(fh, direct) };
      })();
      return opened;
    };
    const close = async (o: { fh: FileHandle; direct?: FileHandle }) => {
      await o.direct?.close();
      await o.fh.close();
    };
    const full = (e: unknown): unknown => (isFull(e) ? new StorageFullError(location, key, e) : e);
    return {
      async write(chunks) {
        try {
          const { writer } = await h();
          await writer.write(Array.isArray(chunks) ? (chunks as Uint8Array[]) : [chunks as Uint8Array]);
        } catch (e) {
          throw full(e);
        }
      },
      async finish() {
        try {
          const o = await h();
          const size = await o.writer.finish();
          await close(o);
          await rename(tmp, final);
          await fsyncDir(dirname(final));
          return { key, size };
        } catch (e) {
          throw full(e);
        }
      },
      async abort() {
        if (!opened) return;
        const o = await opened.catch(() => undefined);
        try {
          await o?.writer.abort();
        } finally {
          if (o) await close(o).catch(() => undefined);
          await unlink(tmp).catch(() => undefined);
        }
      },
    };
  }
}
