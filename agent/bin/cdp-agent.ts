#!/usr/bin/env -S node --max-semi-space-size=1
/**
 * cdp-agent entry point. A backup keeps few JS objects alive for long (chunk and frame buffers
 * are recycled, off the JS heap), so a 1 MiB semi-space costs no measurable speed and keeps the
 * young generation at 2 MiB instead of the 16 MiB it otherwise grows to (2 GiB full local: peak
 * RSS about 12 MiB lower). V8 sizes the young generation when the process starts, so the flag is
 * on the #! line (v8.setFlagsFromString at run time does not shrink it); `node cdp-agent.mjs`
 * works as well, with V8's default young generation.
 */
await import('../cli.ts');
