/** Devices to back up: their ids, sizes (files and block devices) and chunked reads. */
import { readFileSync, realpathSync } from 'node:fs';
import { type FileHandle, open, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { CdpError } from '#core/errors.ts';
import { isDeviceId } from '#core/keys.ts';

export class DeviceError extends CdpError {
  constructor(device: string, reason: string, hint?: string) {
    super('E_DEVICE', `device ${device}: ${reason}`, { device }, hint);
  }
}

export interface DeviceSpec {
  readonly path: string;
  readonly id: string;
  /** Byte extents changed since the parent RP (changed-list.ts); only these are read. */
  readonly changed?: readonly (readonly [number, number])[];
  /**
   * A changed-list file, read after the pre-snapshot command has run (which may write it, e.g.
   * from thin_delta between the new snapshot and the previous one).
   */
  readonly changedFile?: string;
}

/** `PATH` or `PATH=ID`; the id defaults to the sanitized file name (sda, data.img). */
export function parseDeviceArg(arg: string): DeviceSpec {
  const eq = arg.lastIndexOf('=');
  const path = eq > 0 ? arg.slice(0, eq) : arg;
  const id =
    eq > 0
      ? arg.slice(eq + 1)
      : basename(path)
          .toLowerCase()
          .replace(/[^a-z0-9._-]/g, '-')
          .replace(/^[^a-z0-9]+/, '');
  if (!isDeviceId(id))
    throw new DeviceError(
      path,
      `cannot use '${id}' as its id`,
      'name it: --device PATH=ID (ID: a-z 0-9 . _ -)',
    );
  return { path, id };
}

/** Size in bytes of a regular file or a block device. */
export async function deviceSize(path: string): Promise<number> {
  let s: Awaited<ReturnType<typeof stat>>;
  try {
    s = await stat(path);
  } catch (e) {
    throw new DeviceError(
      path,
      `cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
    );
  }
  if (s.isFile()) return s.size;
  if (s.isBlockDevice()) {
    const name = basename(realpathSync(path));
    try {
      return Number(readFileSync(`/sys/class/block/${name}/size`, 'utf8').trim()) * 512;
    } catch {
      throw new DeviceError(path, 'block device size unknown (/sys/class/block not readable)');
    }
  }
  throw new DeviceError(path, 'is neither a regular file nor a block device');
}

export async function openDevice(path: string): Promise<FileHandle> {
  try {
    return await open(path, 'r');
  } catch (e) {
    throw new DeviceError(
      path,
      `cannot be opened (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
    );
  }
}

/** Reads exactly `length` bytes at `offset` into `buf` (fewer only at the end of the device). */
export async function readFully(
  h: FileHandle,
  buf: Uint8Array,
  length: number,
  offset: number,
): Promise<number> {
  let got = 0;
  while (got < length) {
    const { bytesRead } = await h.read(buf, got, length - got, offset + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got;
}
