/** Checks the layer table of docs/ARCHITECTURE.md against every import in the runtime folders. */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '../..');
const LAYERS = ['core', 'adapters', 'functions', 'agent', 'lib'] as const;
type Layer = (typeof LAYERS)[number];

const forbidden: Record<Layer, RegExp[]> = {
  core: [/^#adapters\//, /^@aws-sdk\//, /^aws-cdk-lib/, /^@middy\//, /^@aws-lambda-powertools\//],
  adapters: [/^aws-cdk-lib/, /^@middy\//],
  functions: [/^aws-cdk-lib/, /^constructs$/],
  agent: [/^aws-cdk-lib/, /^constructs$/, /^@middy\//, /^@aws-lambda-powertools\//],
  lib: [/^#adapters\//, /^@aws-sdk\//, /^@middy\//, /^@aws-lambda-powertools\//],
};
const forbiddenLayers: Record<Layer, string[]> = {
  core: ['adapters', 'functions', 'agent', 'lib', 'scripts', 'test'],
  adapters: ['functions', 'agent', 'lib', 'scripts', 'test'],
  functions: ['agent', 'lib', 'scripts', 'test'],
  agent: ['functions', 'lib', 'scripts', 'test'],
  lib: ['functions', 'agent', 'adapters', 'scripts', 'test'],
};

function files(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) return files(p);
    return p.endsWith('.ts') ? [p] : [];
  });
}

function imports(file: string): string[] {
  const src = readFileSync(file, 'utf8');
  const re = /(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;
  return [...src.matchAll(re)].map((m) => m[1] ?? m[2]!);
}

function targetLayer(file: string, spec: string): string | undefined {
  if (spec.startsWith('#')) return spec.slice(1).split('/')[0];
  if (!spec.startsWith('.')) return undefined;
  return relative(root, resolve(file, '..', spec)).split('/')[0];
}

function violations(): string[] {
  const out: string[] = [];
  for (const layer of LAYERS) {
    for (const file of files(join(root, layer))) {
      for (const spec of imports(file)) {
        const target = targetLayer(file, spec);
        const bad =
          forbidden[layer].some((re) => re.test(spec)) || (target && forbiddenLayers[layer].includes(target));
        if (bad) out.push(`${relative(root, file)} imports ${spec}`);
      }
    }
  }
  return out;
}

describe('layer rule (docs/ARCHITECTURE.md)', () => {
  it('finds imports in every runtime layer that has code', () => {
    for (const layer of LAYERS.filter((l) => files(join(root, l)).length > 0)) {
      const count = files(join(root, layer)).flatMap(imports).length;
      expect(count, layer).toBeGreaterThan(0);
    }
  });

  it('has no forbidden import', () => {
    expect(violations()).toEqual([]);
  });

  it('detects a forbidden import when one is present', () => {
    expect(targetLayer(join(root, 'core/x.ts'), '../functions/ingest/handler.ts')).toBe('functions');
    expect(imports.call(null, join(root, 'functions/ingest/handler.ts'))).toContain('#core/s3-event.ts');
  });
});
