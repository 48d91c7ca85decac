/**
 * A young-generation collection on demand, for worker threads whose short-lived objects hold large
 * memory outside the JS heap (moved-in read buffers, ciphertexts). V8 collects such buffers only
 * once some 64 MiB of them pile up per thread, or when the young generation fills, which is rare
 * in these workers; a minor collection after each request frees them. It takes well under a
 * millisecond, the request several.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

export function youngGc(): () => void {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as (o: { type: 'minor'; execution: 'sync' }) => void;
  return () => gc({ type: 'minor', execution: 'sync' });
}
