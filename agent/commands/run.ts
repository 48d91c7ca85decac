/** `cdp-agent run --config <file>`: the continuous-protection daemon (agent/run/daemon.ts). */
import { loadRunConfig } from '../run/config.ts';
import { startDaemon } from '../run/daemon.ts';

export async function runCommand(o: { config: string }): Promise<number> {
  const cfg = loadRunConfig(o.config);
  const d = startDaemon(cfg);
  let signals = 0;
  const onSignal = (sig: string): void => {
    signals++;
    if (signals > 1) process.exit(130);
    console.error(`cdp-agent run: ${sig}: finishing the step in progress, then stopping (again to stop now)`);
    d.stop();
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  await d.done;
  return 0;
}
