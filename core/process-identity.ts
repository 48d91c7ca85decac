/**
 * Who this process is, in a form another process on the same boot can check: the boot id
 * (/proc/sys/kernel/random/boot_id, so two machines, or one machine before and after a reboot, never
 * look alike), the pid namespace (containers on one host share the boot id but not their pids),
 * and the pid with its start time (so a reused pid is not taken for a gone process).
 * Locks and temporary files carry it: one that a process of this boot left and that no longer runs
 * is known to be abandoned at once, without waiting for it to grow stale.
 */

import { createHash } from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';
import { hostname } from 'node:os';

export interface ProcessIdentity {
  readonly host: string;
  readonly bootId: string;
  /** The pid namespace (`pid:[inode]`), '' when unknown. */
  readonly pidNs: string;
  readonly pid: number;
  readonly pidStart: string;
}

function readPidNs(): string {
  try {
    return readlinkSync('/proc/self/ns/pid');
  } catch {
    return '';
  }
}

function readBootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return `unknown-${hostname()}`;
  }
}

/** Field 22 of /proc/<pid>/stat (start time in clock ticks since boot), or '' when unknown. */
function startTimeOf(pid: number): string | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // the command name (field 2) is in parentheses and may contain spaces
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields[19] ?? '';
}

let self: ProcessIdentity | undefined;

export function thisProcess(): ProcessIdentity {
  self ??= {
    host: hostname(),
    bootId: readBootId(),
    pidNs: readPidNs(),
    pid: process.pid,
    pidStart: startTimeOf(process.pid) ?? '',
  };
  return self;
}

/**
 * A short tag of this boot and pid namespace, for names (temporary files): a process that sees the
 * same tag can look the pid up in its own /proc.
 */
export function bootTag(): string {
  const me = thisProcess();
  return createHash('sha256').update(`${me.bootId}/${me.pidNs}`).digest('hex').slice(0, 8);
}

/**
 * Whether the process is known to be gone: true only when it ran on this boot, in this pid
 * namespace, and no process with that pid and start time runs now. False when it runs, or when it
 * ran elsewhere (another host, another container): then only time can tell.
 */
export function processGone(p: { bootId: string; pidNs?: string; pid: number; pidStart?: string }): boolean {
  const me = thisProcess();
  if (p.bootId !== me.bootId || !me.pidNs || p.pidNs !== me.pidNs) return false;
  if (p.pid === me.pid) return p.pidStart !== undefined && p.pidStart !== '' && p.pidStart !== me.pidStart;
  const start = startTimeOf(p.pid);
  if (start === undefined) return true;
  return p.pidStart !== undefined && p.pidStart !== '' && start !== '' && start !== p.pidStart;
}
