/** The ObjectStore contract (core/ports/object-store.ts), run against every adapter. */
import { describe, expect, it } from 'vitest';
import { NotFoundError } from '#core/errors.ts';
import { lockKey, locksPrefix, manifestKey, manifestPrefix, safeConfigKey, segmentKey } from '#core/keys.ts';
import type { ObjectStore } from '#core/ports/object-store.ts';

export const SAFE = 'contract-safe';
const seg = (c: string) => segmentKey(SAFE, c.repeat(64));

export function objectStoreContract(name: string, make: () => Promise<ObjectStore>): void {
  describe(`ObjectStore contract: ${name}`, () => {
    it('get/head/getRange of a missing key: NotFoundError or undefined', async () => {
      const s = await make();
      await expect(s.get(safeConfigKey(SAFE))).rejects.toBeInstanceOf(NotFoundError);
      await expect(s.getRange(safeConfigKey(SAFE), 0, 1)).rejects.toBeInstanceOf(NotFoundError);
      expect(await s.head(safeConfigKey(SAFE))).toBeUndefined();
      await expect(s.getTail(safeConfigKey(SAFE), 4)).rejects.toBeInstanceOf(NotFoundError);
    });

    it('getTail reads the last bytes and the size in one request, or the whole of a short object', async () => {
      const s = await make();
      await s.put(safeConfigKey(SAFE), Buffer.from('0123456789abcdef'));
      const tail = await s.getTail(safeConfigKey(SAFE), 4);
      expect({ bytes: tail.bytes.toString(), size: tail.size }).toEqual({ bytes: 'cdef', size: 16 });
      const all = await s.getTail(safeConfigKey(SAFE), 1000);
      expect({ bytes: all.bytes.toString(), size: all.size }).toEqual({
        bytes: '0123456789abcdef',
        size: 16,
      });
    });

    it('put then get, head and ranged reads', async () => {
      const s = await make();
      const body = Buffer.from('0123456789abcdef');
      await s.put(safeConfigKey(SAFE), body);
      expect(await s.get(safeConfigKey(SAFE))).toEqual(body);
      expect(await s.head(safeConfigKey(SAFE))).toMatchObject({ key: safeConfigKey(SAFE), size: 16 });
      expect((await s.getRange(safeConfigKey(SAFE), 10, 4)).toString()).toBe('abcd');
      await expect(s.getRange(safeConfigKey(SAFE), 14, 10)).rejects.toThrow();
    });

    it('getRange into a caller buffer reads there and returns a view of it', async () => {
      const s = await make();
      await s.put(safeConfigKey(SAFE), Buffer.from('0123456789abcdef'));
      const into = new Uint8Array(new ArrayBuffer(32), 8, 16).fill(0x2e);
      const got = await s.getRange(safeConfigKey(SAFE), 10, 4, into);
      expect(got.toString()).toBe('abcd');
      expect(got.buffer).toBe(into.buffer);
      expect(got.byteOffset).toBe(8);
      expect(Buffer.from(into).toString()).toBe('abcd............');
      await expect(s.getRange(safeConfigKey(SAFE), 0, 16, new Uint8Array(4))).rejects.toThrow(/need 16/);
    });

    it('putIfAbsent creates once and never overwrites', async () => {
      const s = await make();
      expect(await s.putIfAbsent(manifestKey(SAFE, 1), Buffer.from('first'))).toBe(true);
      expect(await s.putIfAbsent(manifestKey(SAFE, 1), Buffer.from('second'))).toBe(false);
      expect((await s.get(manifestKey(SAFE, 1))).toString()).toBe('first');
    });

    it('lists keys under a prefix in key order', async () => {
      const s = await make();
      for (const rp of [10, 2, 1]) await s.put(manifestKey(SAFE, rp), Buffer.from('x'));
      await s.put(seg('a'), Buffer.from('y'));
      const listed = await s.list(manifestPrefix(SAFE));
      expect(listed.map((o) => o.key)).toEqual([1, 2, 10].map((rp) => manifestKey(SAFE, rp)));
      expect(await s.list(manifestPrefix('another-safe'))).toEqual([]);
    });

    it('a streamed object is invisible until finished, and never after abort', async () => {
      const s = await make();
      const w = s.openWriter(seg('b'));
      const parts = [Buffer.alloc(3 * 1024 * 1024, 1), Buffer.alloc(6 * 1024 * 1024, 2), Buffer.from('tail')];
      for (const p of parts) await w.write(p);
      expect(await s.head(seg('b'))).toBeUndefined();
      const info = await w.finish();
      expect(info.size).toBe(9 * 1024 * 1024 + 4);
      expect(await s.get(seg('b'))).toEqual(Buffer.concat(parts));
      const a = s.openWriter(seg('c'));
      await a.write(Buffer.from('partial'));
      await a.abort();
      expect(await s.head(seg('c'))).toBeUndefined();
      expect((await s.list(`${seg('c').slice(0, -70)}`)).map((o) => o.key)).not.toContain(seg('c'));
    });

    it('presignGet (where offered): a URL that GETs a range without credentials; 404 for a missing key', async () => {
      const s = await make();
      if (!s.presignGet) {
        expect(s.filePath).toBeDefined(); // only a store of local files may lack it
        return;
      }
      await s.put(seg('f'), Buffer.from('0123456789abcdef'));
      const r = await fetch(await s.presignGet(seg('f'), 60), { headers: { Range: 'bytes=3-6' } });
      expect(r.status).toBe(206);
      expect(await r.text()).toBe('3456');
      const missing = await fetch(await s.presignGet(seg('9'), 60));
      expect(missing.status).toBe(404);
    });

    it("head and list give the store's modification time; restamp moves it while the object holds the same bytes", async () => {
      const s = await make();
      const key = lockKey(SAFE, 'ab'.repeat(16));
      const body = Buffer.from('{"lock": true}');
      const t0 = Date.now();
      expect(await s.putIfAbsent(key, body)).toBe(true);
      const h = (await s.head(key))!;
      expect(h.version).toBeTruthy();
      // stores stamp whole seconds at worst; the clock is the store's own, close to ours here
      expect(Math.abs(h.modified!.getTime() - t0)).toBeLessThan(5_000);
      const listed = await s.list(locksPrefix(SAFE));
      expect(listed.map((o) => o.key)).toEqual([key]);
      expect(listed[0]!.modified!.getTime()).toBe(h.modified!.getTime());
      await new Promise((r) => setTimeout(r, 1100)); // let the store's one-second clock move
      const v2 = await s.restamp(key, body, h.version!);
      expect(v2).toBeTruthy();
      const h2 = (await s.head(key))!;
      expect(h2.modified!.getTime()).toBeGreaterThan(h.modified!.getTime());
      expect((await s.get(key)).equals(body)).toBe(true);
      // another holder of the same lock re-stamped it (its version moved on): still ours
      expect(await s.restamp(key, body, 'an-older-version')).toBeTruthy();
      // other bytes there (another writer replaced it): not ours any more, and left as it is
      const other = Buffer.from('{"lock": false}');
      await s.put(key, other);
      expect(await s.restamp(key, body, v2!)).toBeUndefined();
      expect((await s.get(key)).equals(other)).toBe(true);
      await s.delete(key);
      expect(await s.restamp(key, body, v2!)).toBeUndefined();
      expect(await s.head(key)).toBeUndefined(); // a refused restamp never recreates the object
    });

    it('cleanTemporaries removes unfinished writes started before the given time, nothing else', async () => {
      const s = await make();
      await s.put(seg('e'), Buffer.from('kept'));
      const w = s.openWriter(seg('1'));
      // three 5 MiB parts through an S3 store's two upload slots: the third waits for one of the
      // first two to finish, so when this resolves the multipart upload exists and has a part
      await w.write(Buffer.alloc(15 * 1024 * 1024, 7));
      expect(await s.cleanTemporaries(new Date(Date.now() - 3600_000))).toBe(0);
      await new Promise((r) => setTimeout(r, 1100)); // the store's clock stamps whole seconds
      expect(await s.cleanTemporaries(new Date(Date.now() + 1000))).toBe(1);
      await w.abort();
      expect((await s.get(seg('e'))).toString()).toBe('kept');
      expect(await s.cleanTemporaries(new Date(Date.now() + 1000))).toBe(0);
    });

    it('delete removes an object and tolerates a missing one', async () => {
      const s = await make();
      await s.put(seg('d'), Buffer.from('doomed'));
      await s.delete(seg('d'));
      expect(await s.head(seg('d'))).toBeUndefined();
      await expect(s.delete(seg('d'))).resolves.toBeUndefined();
    });
  });
}
