/**
 * cdp-agent: block-level backup of devices into a Disk Safe (a directory or S3).
 * Exit codes: see agent/exit-codes.ts and the table in README.md ("The agent").
 */
import { Command, CommanderError } from 'commander';
import { CdpError } from '#core/errors.ts';
import { backupCommand } from './commands/backup.ts';
import { listCommand } from './commands/list.ts';
import { EXIT, exitCodeFor } from './exit-codes.ts';
import { defaultStateDir } from './state/agent-state.ts';
import { AGENT_VERSION } from './version.ts';

const collect = (v: string, prev: string[]): string[] => [...prev, v];
const program = new Command('cdp-agent')
  .version(AGENT_VERSION)
  .description('Block-level continuous data protection agent')
  .exitOverride();

program
  .command('backup')
  .description('take a recovery point of one or more devices (one consistency group)')
  .requiredOption('--safe <dir|s3://bucket/prefix>', 'the Disk Safe')
  .requiredOption('--device <path[=id]>', 'a device or image to protect (repeat for a group)', collect, [])
  .option(
    '--changed-list <id=file>',
    'read only the extents this file lists as changed since the last RP (extent list or thin_delta XML)',
    collect,
    [],
  )
  .option(
    '--block-size <size>',
    'block size at a device’s first backup: 4k..512k, a power of two (default 64k)',
  )
  .option('--encrypt-key-file <file>', 'encrypt client-side with this 32-byte key (raw, hex or base64)')
  .option('--pre-snapshot <cmd>', 'run before capture (fsfreeze, LVM snapshot)')
  .option('--post-snapshot <cmd>', 'run after capture, always')
  .option('--bwlimit <rate>', 'upload limit, bytes/s with k/M/G (e.g. 20M)')
  .option('--state-dir <dir>', 'agent state (default $CDP_AGENT_STATE or ~/.local/state/cdp-agent)')
  .option('--take-over', 'write to a safe created by another agent id')
  .option('--workers <n>', 'scan worker threads (default: one per core)')
  .option('--segment-size <size>', 'close segments at about this size (default 32M)')
  .option('--json', 'print the result as JSON')
  .action(async (o) => {
    process.exitCode = await backupCommand(o);
  });

program
  .command('list')
  .description('list the recovery points of a safe, oldest first')
  .requiredOption('--safe <dir|s3://bucket/prefix>', 'the Disk Safe')
  .option(
    '--remote [function]',
    'ask the offsite catalog instead of reading the safe (query function name; default $CDP_QUERY_FUNCTION)',
  )
  .option('--json', 'print JSON')
  .action(async (o) => {
    if (o.remote === undefined) {
      process.exitCode = await listCommand(o);
      return;
    }
    const remote = o.remote === true ? process.env.CDP_QUERY_FUNCTION : o.remote;
    if (!remote) throw new CdpError('E_USAGE', '--remote needs a function name or $CDP_QUERY_FUNCTION');
    const { listRemoteCommand } = await import('./commands/list-remote.ts');
    process.exitCode = await listRemoteCommand({ ...o, remote });
  });

program
  .command('restore')
  .description('restore one device of a recovery point into a file or block device')
  .requiredOption('--safe <dir|s3://bucket/prefix>', 'the Disk Safe')
  .requiredOption('--device <id>', 'the device id (as `list` shows it)')
  .option('--rp <n|latest|time>', 'RP number, latest, or a time (the newest RP at or before it)', 'latest')
  .requiredOption('--to <file|device>', 'where to write; an existing copy gets a delta restore')
  .option(
    '--remote [function]',
    'plan through the restore function (default $CDP_RESTORE_FUNCTION); no bucket access needed',
  )
  .option('--encrypt-key-file <file>', 'key of an encrypted safe')
  .option('--allow-damaged', 'go on past corrupt blocks and report them (exit 8)')
  .option('--full', 'overwrite --to completely instead of a delta restore (implies --overwrite)')
  .option(
    '--overwrite',
    'write over --to even when it is not recognisably an earlier copy of the device (or is the device the RP was taken from)',
  )
  .option('--parallel <n>', 'ranged reads in flight (default 8 from S3, 4 from a directory)')
  .option('--json', 'print the result as JSON')
  .action(async (o) => {
    const remote = o.remote === true ? process.env.CDP_RESTORE_FUNCTION : o.remote;
    if (o.remote === true && !remote)
      throw new CdpError('E_USAGE', '--remote needs a function name or $CDP_RESTORE_FUNCTION');
    const { restoreCommand } = await import('./commands/restore.ts');
    process.exitCode = await restoreCommand({ ...o, remote });
  });

program
  .command('verify')
  .description('check that recovery points are restorable (every block read and checked), writing nothing')
  .requiredOption('--safe <dir|s3://bucket/prefix>', 'the Disk Safe')
  .option('--rp <n|latest|time>', 'one RP (default: all)')
  .option('--device <id>', 'one device (default: all)')
  .option('--encrypt-key-file <file>', 'key of an encrypted safe')
  .option('--json', 'print the result as JSON')
  .action(async (o) => {
    const { verifyCommand } = await import('./commands/verify.ts');
    process.exitCode = await verifyCommand(o);
  });

program
  .command('replicate')
  .description('copy the committed recovery points each destination lacks (Multi-Point Replication)')
  .requiredOption('--from <safe>', 'the source safe (dir or s3://), or with --select a folder of safes')
  .requiredOption(
    '--to <safe>',
    'a destination (repeat for several)',
    (v: string, acc: string[]) => [...acc, v],
    [],
  )
  .option('--select <names>', 'comma-separated safe ids under --from and --to')
  .option('--bwlimit <rate>', 'transfer limit, bytes/s with k/M/G (e.g. 20M)')
  .option(
    '--encrypt-key-file <file>',
    'key of an encrypted safe: every block is then checked too, not only the structure',
  )
  .option('--json', 'print the result as JSON')
  .action(async (o) => {
    const { replicateCommand } = await import('./commands/replicate.ts');
    process.exitCode = await replicateCommand(o);
  });

program
  .command('run')
  .description('continuous protection: an RP every interval, replicated to every destination (a daemon)')
  .requiredOption('--config <file>', 'JSON configuration (see README "Continuous protection")')
  .action(async (o) => {
    const { runCommand } = await import('./commands/run.ts');
    process.exitCode = await runCommand(o);
  });

program
  .command('status')
  .description('per safe and destination: newest RP, lag, what is still to copy, last error')
  .requiredOption('--config <file>', 'the `run` configuration')
  .option('--json', 'print JSON')
  .action(async (o) => {
    const { statusCommand } = await import('./commands/status.ts');
    process.exitCode = await statusCommand(o);
  });

program
  .command('rpo')
  .description("set a safe's RPO target in the offsite catalog (the lag alarm fires past it)")
  .requiredOption('--safe <s3://bucket/safes/id>', 'the offsite safe')
  .requiredOption('--target <duration>', 'e.g. 15m, 1h')
  .option('--table <name>', 'the catalog table (stack output CatalogTableName; default $CDP_CATALOG_TABLE)')
  .option('--json', 'print JSON')
  .action(async (o) => {
    const { rpoCommand } = await import('./commands/rpo.ts');
    process.exitCode = await rpoCommand(o);
  });

program
  .command('policy')
  .description(
    'show or set the retention policy kept in the safe (applied by compact and the offsite Lambda)',
  )
  .requiredOption('--safe <dir|s3://bucket/prefix>', 'the Disk Safe')
  .option('--last <n>', 'keep the newest n RPs')
  .option('--hourly <n>', 'keep the newest RP of each of the last n hours')
  .option('--daily <n>', 'keep the newest RP of each of the last n days')
  .option('--weekly <n>', 'keep the newest RP of each of the last n ISO weeks')
  .option('--monthly <n>', 'keep the newest RP of each of the last n months')
  .option('--lock <rp>', 'keep this RP whatever the policy says (repeat)', collect, [])
  .option('--unlock <rp>', 'release a locked RP (repeat)', collect, [])
  .option('--json', 'print JSON')
  .action(async (o) => {
    const { policyCommand } = await import('./commands/policy.ts');
    process.exitCode = await policyCommand(o);
  });

program
  .command('compact')
  .description(
    'apply retention and compact the safe: merge expired RPs, bound restore chains, collect garbage',
  )
  .requiredOption('--safe <dir|s3://bucket/prefix>', 'the Disk Safe')
  .option('--grace <duration>', 'delete unreferenced objects this long after they were retired', '2h')
  .option('--max-deltas <n>', 'restore chains: at most this many deltas over a full map', '7')
  .option('--state-dir <dir>', 'agent state directory')
  .option('--json', 'print JSON')
  .action(async (o) => {
    const { compactCommand } = await import('./commands/compact.ts');
    process.exitCode = await compactCommand(o);
  });

/**
 * A full filesystem that the agent's own state hit (the safe's stores name theirs, StorageFullError):
 * named with the file, or else the state directory, not reported as "unexpected".
 */
function named(e: unknown): unknown {
  const errno = e as NodeJS.ErrnoException;
  if (e instanceof CdpError || (errno?.code !== 'ENOSPC' && errno?.code !== 'EDQUOT')) return e;
  const i = process.argv.indexOf('--state-dir');
  const stateDir =
    i > 0
      ? process.argv[i + 1]
      : process.argv.find((a) => a.startsWith('--state-dir='))?.slice('--state-dir='.length);
  const where = errno.path ?? `the state directory ${stateDir ?? defaultStateDir()}`;
  return new CdpError(
    'E_NO_SPACE',
    `no space left on the filesystem of ${where} (${errno.code})`,
    { path: where },
    'free space there (the state directory or the safe), then run again: the next run rebuilds what it needs',
    { cause: e },
  );
}

try {
  await program.parseAsync();
} catch (caught) {
  const e = named(caught);
  if (e instanceof CommanderError) {
    process.exitCode = e.exitCode === 0 ? EXIT.ok : EXIT.usage;
  } else if (e instanceof CdpError) {
    const json = process.argv.includes('--json');
    if (json) console.error(JSON.stringify({ error: e.toJSON() }));
    else console.error(`cdp-agent: ${e.message}${e.hint ? `\n  hint: ${e.hint}` : ''}`);
    process.exitCode = exitCodeFor(e.code);
  } else {
    console.error(`cdp-agent: ${(e as Error).stack ?? e}`);
    process.exitCode = EXIT.failure;
  }
}
