/**
 * Mutations of JSON documents by path: every path to a value of a document, and a value put at one
 * (or the value removed). Shared by the index property test and the bad-input fuzzer.
 */
import fc from 'fast-check';

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Every path to a value in a JSON document, the root (the empty path) first. */
export function paths(v: Json, at: (string | number)[] = []): (string | number)[][] {
  const here = [at];
  if (Array.isArray(v)) return here.concat(v.flatMap((x, i) => paths(x, [...at, i])));
  if (v && typeof v === 'object')
    return here.concat(Object.entries(v).flatMap(([key, x]) => paths(x, [...at, key])));
  return here;
}

/** Puts `value` at `path` in `doc` (in place), or removes what is there when `value` is undefined. */
export function setAt(doc: Json, path: (string | number)[], value: Json | undefined): Json {
  if (path.length === 0) return value ?? null;
  // biome-ignore lint/suspicious/noExplicitAny: walks an arbitrary JSON document
  const parent = path.slice(0, -1).reduce<any>((o, p) => o[p], doc);
  const last = path[path.length - 1]!;
  if (value === undefined) {
    if (Array.isArray(parent)) parent.splice(Number(last), 1);
    else delete parent[last];
  } else parent[last] = value;
  return doc;
}

/** The value at `path` (undefined when there is none). */
export function getAt(doc: Json, path: readonly (string | number)[]): Json | undefined {
  // biome-ignore lint/suspicious/noExplicitAny: walks an arbitrary JSON document
  return path.reduce<any>((o, p) => (o === null || typeof o !== 'object' ? undefined : o[p]), doc);
}

/** A value a field may be given: absent, another type, a boundary or huge number, a foreign string. */
export function jsonValue(strings: readonly string[] = []): fc.Arbitrary<Json | undefined> {
  return fc.oneof(
    fc.constant(undefined),
    fc.constant(null),
    fc.boolean(),
    fc.integer({ min: -2, max: 2 ** 40 }),
    fc.constantFrom(0, 1, 2, 3, 4096, 65536),
    fc.constantFrom(-1, 1.5, 2 ** 31, 2 ** 32, 2 ** 32 - 1, 2 ** 53, 2 ** 53 + 2, -(2 ** 53), 1e308),
    fc.string({ maxLength: 12 }),
    fc.constantFrom('', '../x', 'a'.repeat(64), '2000-01-01T00:00:00Z', 'not a time', ...strings),
    fc.constantFrom<Json>([], {}, [1], { x: 1 }),
  );
}
