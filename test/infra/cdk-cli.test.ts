/** The path a user deploys with: the real `cdk` CLI reads cdk.json and synthesizes the app. */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');

it('npx cdk synth succeeds on the repository as cloned and writes the stack template', () => {
  const out = mkdtempSync(join(tmpdir(), 'cdk-out-'));
  try {
    execFileSync('npx', ['cdk', 'synth', '--quiet', '--output', out], { cwd: ROOT, stdio: 'pipe' });
    const template = join(out, 'CdpOffsite.template.json');
    expect(existsSync(template)).toBe(true);
    expect(Object.keys(JSON.parse(readFileSync(template, 'utf8')).Resources).length).toBeGreaterThan(10);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}, 240_000);
