import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    reporters: ['default'],
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts', 'test/architecture/**/*.test.ts'],
          // fsync-heavy cases share 2 cores with the CDK synths of the other projects.
          testTimeout: 30_000,
        },
      },
      {
        test: {
          name: 'infra',
          include: ['test/infra/**/*.test.ts'],
          testTimeout: 60_000,
          // the synth bundles five functions with esbuild
          hookTimeout: 120_000,
        },
      },
      {
        test: {
          name: 'scenarios',
          include: ['test/scenarios/**/*.test.ts'],
          // each case runs the real agent CLI several times against directory safes
          testTimeout: 120_000,
        },
      },
      {
        test: {
          name: 'fuzz',
          include: ['test/fuzz/**/*.test.ts'],
          // FUZZ_RUNS mutated safes fed to five consumers in one file (npm run fuzz: 10000)
          testTimeout: 900_000,
          hookTimeout: 120_000,
          // Node's own TypeScript loading: the product code runs at its native speed (the Vite
          // module runner's import wrappers made every input about twice as slow)
          experimental: { viteModuleRunner: false },
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          // Each file starts its own moto server; two at a time on a 2-core machine.
          pool: 'forks',
          maxWorkers: 2,
          testTimeout: 180_000,
          hookTimeout: 180_000,
        },
      },
    ],
  },
});
