/** Exit codes of cdp-agent (the table in README.md, "The agent"). */
export const EXIT = {
  ok: 0,
  /** Anything unexpected (a bug, an I/O error the agent cannot classify). */
  failure: 1,
  /** Bad command line. */
  usage: 2,
  /** A device is unreadable, vanished, or changed size. */
  device: 3,
  /** The safe is of another agent, another format version, encrypted with another key, damaged, or its storage is full. */
  safe: 4,
  /** Another writer holds the safe's lock or committed the same recovery point first, or the lock was lost; run again. */
  conflict: 5,
  /** The RP was committed but the post-snapshot command failed. */
  postSnapshot: 6,
  /** The offsite query function failed or could not be reached (`list --remote`). */
  remote: 7,
  /** Restore finished with damaged blocks (--allow-damaged), or verify found damage. */
  damaged: 8,
} as const;

export function exitCodeFor(code: string | undefined): number {
  switch (code) {
    case 'E_USAGE':
    case 'E_CONFIG':
      return EXIT.usage;
    case 'E_DEVICE':
      return EXIT.device;
    case 'E_SAFE_ACCESS':
    case 'E_SAFE_FORMAT':
    case 'E_CORRUPT_BLOCK':
    case 'E_NOT_FOUND':
    case 'E_NO_SPACE':
    case 'E_NO_SAFE':
      return EXIT.safe;
    case 'E_REMOTE':
      return EXIT.remote;
    case 'E_CONFLICT':
    case 'E_LOCK_BUSY':
    case 'E_LOCK_LOST':
      return EXIT.conflict;
    case 'E_POST_SNAPSHOT':
      return EXIT.postSnapshot;
    case 'E_DAMAGED':
      return EXIT.damaged;
    default:
      return EXIT.failure;
  }
}
