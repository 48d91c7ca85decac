/**
 * Checks the layer table of docs/ARCHITECTURE.md against every import in the runtime folders, both
 * ways: nothing a layer must never import, and nothing outside what it may import (its allow-list).
 * Static, dynamic and side-effect imports, re-exports and `require` all count.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');
const LAYERS = ['core', 'adapters', 'functions', 'agent', 'lib'] as const;
type Layer = (typeof LAYERS)[number];

interface Rule {
  /** Folders of this repository it may import from. */
  readonly layers: readonly string[];
  /** Packages it may import (Node built-ins, `node:…`, are allowed everywhere). */
  readonly packages: readonly RegExp[];
}

const SDK = /^@aws-sdk\/|^@smithy\//;

/** The "may import" column of docs/ARCHITECTURE.md. */
const RULES: Record<Layer, Rule> = {
  core: { layers: ['core'], packages: [/^zod$/] },
  adapters: { layers: ['core', 'adapters'], packages: [SDK] },
  functions: {
    layers: ['core', 'adapters', 'functions'],
    packages: [/^zod$/, /^@middy\//, /^@aws-lambda-powertools\//, /^aws-lambda$/],
  },
  agent: { layers: ['core', 'adapters', 'agent'], packages: [/^zod$/, /^commander$/, /^cli-progress$/] },
  lib: { layers: ['core', 'lib'], packages: [/^aws-cdk-lib(\/|$)/, /^constructs$/, /^cdk-nag$/] },
};

/**
 * The documented exception (docs/ARCHITECTURE.md, "Where AWS SDK clients are made"): the
 * composition roots that build SDK clients, or call an AWS API that no port covers yet, may import
 * the SDK. Everything else reaches AWS through adapters.
 */
const SDK_ROOTS = [
  'functions/commons/clients.ts',
  'functions/commons/queue.ts',
  'functions/export/handler.ts',
  'functions/restore/handler.ts',
  'agent/clients.ts',
  'agent/remote-function.ts',
];

function files(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names.flatMap((n) => {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) return files(p);
    return p.endsWith('.ts') ? [p] : [];
  });
}

/** Every module specifier a file imports, re-exports or requires (comments ignored). */
function imports(src: string): string[] {
  const code = src.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
  const patterns = [
    /(?:^|[;\s])(?:import|export)\s[^'";]*?\sfrom\s*['"]([^'"]+)['"]/g, // import x from, export … from
    /(?:^|[;\s])import\s*['"]([^'"]+)['"]/g, // import 'side-effect'
    /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g, // import('dynamic')
    /\brequire\(\s*['"]([^'"]+)['"]\s*\)/g, // require('commonjs')
  ];
  return patterns.flatMap((re) => [...code.matchAll(re)].map((m) => m[1]!));
}

/** The repository folder a relative or `#` import lands in, or undefined for a package. */
function targetLayer(root: string, file: string, spec: string): string | undefined {
  if (spec.startsWith('#')) return spec.slice(1).split('/')[0];
  if (!spec.startsWith('.')) return undefined;
  return relative(root, resolve(dirname(file), spec)).split('/')[0];
}

function verdict(root: string, layer: Layer, file: string, spec: string): string | undefined {
  const target = targetLayer(root, file, spec);
  const rule = RULES[layer];
  if (target !== undefined)
    return rule.layers.includes(target) ? undefined : `${layer}/ may not import ${target}/`;
  if (spec.startsWith('node:')) return undefined;
  if (rule.packages.some((re) => re.test(spec))) return undefined;
  if (SDK.test(spec) && SDK_ROOTS.includes(relative(root, file))) return undefined;
  return `${layer}/ may not import the package ${spec}`;
}

function violations(root: string): string[] {
  const out: string[] = [];
  for (const layer of LAYERS)
    for (const file of files(join(root, layer)))
      for (const spec of imports(readFileSync(file, 'utf8'))) {
        const why = verdict(root, layer, file, spec);
        if (why) out.push(`${relative(root, file)} imports ${spec}: ${why}`);
      }
  return out;
}

describe('layer rule (docs/ARCHITECTURE.md)', () => {
  it('finds imports in every runtime layer', () => {
    for (const layer of LAYERS) {
      const count = files(join(ROOT, layer)).flatMap((f) => imports(readFileSync(f, 'utf8'))).length;
      expect(count, layer).toBeGreaterThan(0);
    }
  });

  it('has no import outside a layer’s allow-list', () => {
    expect(violations(ROOT)).toEqual([]);
  });

  it('every SDK exception still imports the SDK (a stale exception is removed)', () => {
    for (const f of SDK_ROOTS)
      expect(
        imports(readFileSync(join(ROOT, f), 'utf8')).some((s) => SDK.test(s)),
        f,
      ).toBe(true);
  });

  it('detects each kind of violation planted in a throwaway tree', () => {
    const root = mkdtempSync(join(tmpdir(), 'layers-'));
    try {
      const plant = (path: string, src: string) => {
        mkdirSync(dirname(join(root, path)), { recursive: true });
        writeFileSync(join(root, path), src);
      };
      plant(
        'core/ok.ts',
        "import { z } from 'zod';\nimport { x } from './other.ts';\n// import '#agent/cli.ts';\n",
      );
      plant('core/static.ts', "import { S3ObjectStore } from '#adapters/s3-store.ts';\n");
      plant('core/side-effect.ts', "import '../functions/ingest/handler.ts';\n");
      plant('core/required.ts', "const m = require('@aws-sdk/client-s3');\n");
      plant('core/reexport.ts', "export * from '../agent/cli.ts';\n");
      plant('core/dynamic.ts', "const m = await import('aws-cdk-lib');\n");
      plant('agent/sdk.ts', "import { S3Client } from '@aws-sdk/client-s3';\n");
      plant('lib/fn.ts', "import type { Handler } from '#functions/ingest/handler.ts';\n");
      plant('functions/unknown.ts', "import leftPad from 'left-pad';\n");
      expect(violations(root).sort()).toEqual(
        [
          'agent/sdk.ts imports @aws-sdk/client-s3: agent/ may not import the package @aws-sdk/client-s3',
          'core/dynamic.ts imports aws-cdk-lib: core/ may not import the package aws-cdk-lib',
          'core/reexport.ts imports ../agent/cli.ts: core/ may not import agent/',
          'core/required.ts imports @aws-sdk/client-s3: core/ may not import the package @aws-sdk/client-s3',
          'core/side-effect.ts imports ../functions/ingest/handler.ts: core/ may not import functions/',
          'core/static.ts imports #adapters/s3-store.ts: core/ may not import adapters/',
          'functions/unknown.ts imports left-pad: functions/ may not import the package left-pad',
          'lib/fn.ts imports #functions/ingest/handler.ts: lib/ may not import functions/',
        ].sort(),
      );
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
