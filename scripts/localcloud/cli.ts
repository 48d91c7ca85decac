/**
 * The local cloud, from the command line:
 *   start    start the embedded moto server (reused when already running) and record it
 *   stop     stop it (by the PID recorded at start)
 *   reset    wipe its state
 *   status   print where it runs
 *   deploy   synthesize and deploy the CDK app into it; print the stack outputs
 *   functions run the stack's functions until Ctrl-C: queue mappings, schedules, and the Lambda
 *             Invoke API (for `cdp-agent list --remote`, `aws lambda invoke`)
 * Add --json for machine-readable output.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { Command } from 'commander';
import { deployLocal } from './deploy.ts';
import { startLocalFunctions } from './local-functions.ts';
import { isHealthy, isMotoProcess, resetMoto, startMoto, stopMoto } from './moto.ts';
import { outputsFile, serverStateFile, stateDir } from './paths.ts';
import { profileFromEnv, readServerState } from './profile.ts';

function print(json: boolean, data: unknown, text: string): void {
  console.log(json ? JSON.stringify(data, null, 2) : text);
}

const program = new Command('cloud')
  .description('The embedded local AWS cloud (moto server)')
  .option('--json');
const json = (): boolean => Boolean(program.opts().json);

program.command('start').action(async () => {
  const s = readServerState();
  if (s && isMotoProcess(s.pid) && (await isHealthy(s.endpoint))) {
    return print(json(), s, `local cloud already running at ${s.endpoint} (pid ${s.pid})`);
  }
  mkdirSync(stateDir, { recursive: true });
  const m = await startMoto({ detached: true, logFile: `${stateDir}/moto.log` });
  writeFileSync(serverStateFile, JSON.stringify(m));
  print(json(), m, `local cloud running at ${m.endpoint} (pid ${m.pid}); logs in ${stateDir}/moto.log`);
});

program.command('stop').action(async () => {
  const s = readServerState();
  if (!s) return print(json(), { stopped: false }, 'local cloud is not running');
  await stopMoto(s.pid);
  rmSync(serverStateFile, { force: true });
  print(json(), { stopped: true, pid: s.pid }, `local cloud stopped (pid ${s.pid})`);
});

program.command('reset').action(async () => {
  const p = profileFromEnv();
  await resetMoto(p.endpoint);
  rmSync(outputsFile, { force: true });
  print(json(), { reset: true }, `local cloud at ${p.endpoint} reset`);
});

program.command('status').action(async () => {
  const s = readServerState();
  const healthy = s ? await isHealthy(s.endpoint) : false;
  print(
    json(),
    { ...s, healthy },
    s ? `${s.endpoint} pid ${s.pid}: ${healthy ? 'healthy' : 'NOT answering'}` : 'not running',
  );
  if (!healthy) process.exitCode = 3;
});

program.command('deploy').action(async () => {
  const d = await deployLocal(profileFromEnv());
  mkdirSync(stateDir, { recursive: true });
  writeFileSync(outputsFile, JSON.stringify(d, null, 2));
  const lines = Object.entries(d.outputs).map(([k, v]) => `  ${k.padEnd(26)} ${v}`);
  const fixed = d.reapplied
    .filter((r) => r.status !== 'in-effect')
    .map((r) => `  ${r.status.padEnd(18)} ${r.logicalId} ${r.property}`);
  print(
    json(),
    d,
    [
      `stack ${d.stackName} deployed to ${d.profile.endpoint} in ${d.deployMs} ms`,
      'outputs:',
      ...lines,
      'emulator gaps handled:',
      ...fixed,
    ].join('\n'),
  );
});

program.command('functions').action(async () => {
  const p = profileFromEnv();
  if (!p.runsLambdaLocally) throw new Error(`${p.name} runs the functions itself`);
  const d = await deployLocal(p);
  const local = await startLocalFunctions(d, { logDir: `${stateDir}/logs` });
  const invoke = await local.serveInvoke();
  local.runSchedules((fn, r) => console.log(JSON.stringify({ scheduled: fn, result: r })));
  console.error(
    `running ${local.hosts.size} function(s), ${local.pollers.length} queue mapping(s), ${d.schedules.length} schedule(s); ` +
      `Lambda Invoke API at ${invoke.endpoint} (export AWS_ENDPOINT_URL_LAMBDA=${invoke.endpoint}); Ctrl-C stops`,
  );
  const stop = (): void => {
    void local.close().then(() => process.exit(0));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  await Promise.all(local.pollers.map((pl) => pl.run((o) => console.log(JSON.stringify(o)))));
});

program.parseAsync().catch((e: Error) => {
  console.error(`cloud: ${e.message}`);
  process.exit(1);
});
