/**
 * Integration tests get their own moto server per test file (moto is not built for concurrent
 * use by many workers). A server that cannot start fails the test; nothing is ever skipped.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { type CloudClients, cloudClients } from '../../scripts/localcloud/clients.ts';
import { type MotoServer, startMoto, stopMoto } from '../../scripts/localcloud/moto.ts';
import { type CloudProfile, motoProfile } from '../../scripts/localcloud/profile.ts';

export interface TestCloud {
  /** A private cdk.out for this file, so files synthesizing in parallel do not collide. */
  outdir: string;
  server: MotoServer;
  profile: CloudProfile;
  clients: CloudClients;
}

/** Starts a moto server before the file's tests and stops it after them. */
export function useLocalCloud(): TestCloud {
  const cloud = {} as TestCloud;
  beforeAll(async () => {
    cloud.outdir = mkdtempSync(join(tmpdir(), 'cdk-out-'));
    cloud.server = await startMoto();
    cloud.profile = motoProfile(cloud.server.endpoint);
    cloud.clients = cloudClients(cloud.profile);
  });
  afterAll(async () => {
    if (cloud.server) await stopMoto(cloud.server.pid);
    if (cloud.outdir) rmSync(cloud.outdir, { recursive: true, force: true });
  });
  return cloud;
}
