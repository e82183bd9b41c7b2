// SPDX-License-Identifier: MIT
// "Read, then subscribe from that read's bookmark" (docs/realtime.md, "Bookmarks and resuming"): a SQL read
// answers X-Edge-Bookmark with the version vector of the snapshot it ran on, so the rows it returned plus the
// events after that bookmark are exactly the table's history: no gap and no duplicate, at the region that
// served the read or at any other, while all three regions write; a hot-read cache hit answers with the
// bookmark of the snapshot its entry was read on.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { startCluster } from './lib/cluster.mjs';
import { checkReadThenSubscribe, createKv, kvWriters } from './lib/read_feed.mjs';
import { openRt, parseBookmark } from './lib/rt.mjs';

const ROWS_PER_REGION = 8;

describe('a read\'s bookmark orders it with the real-time feed', { timeout: 240000 }, () => {
  let c;
  before(async () => {
    c = await startCluster({ regions: 3 });
    await createKv(c, ROWS_PER_REGION);
  });
  after(async () => { if (c) await c.destroy(); });

  test('rows + events after the read\'s bookmark = the final table, under concurrent writes', { timeout: 200000 },
    async () => {
      // Each region increments its own rows and inserts new ones, bounded in count.
      const w = kvWriters(c, { rowsPerRegion: ROWS_PER_REGION, max: 400 });
      try {
        // Readers: read at one region, subscribe from the read's bookmark at the same one and at another.
        const readers = [];
        for (let round = 0; round < 6; round++) {
          await w.waitWrites((round + 1) * 40);
          const at = c.ids[round % 3];
          const r = await c.sql(at, 'SELECT id, v FROM kv ORDER BY id');
          assert.ok(r.ok, JSON.stringify(r.error));
          assert.ok(r.bookmark, `round ${round}: the read at ${at} answered no X-Edge-Bookmark`);
          const bm = parseBookmark(r.bookmark);
          for (const sub of [at, c.ids[(round + 1) % 3]]) {
            const rt = await openRt(c.url(sub));
            const ready = await rt.subscribe({ id: 1, tables: ['kv'], from: r.bookmark });
            assert.equal(ready.type, 'ready', JSON.stringify(ready));
            readers.push({ what: `read at ${at} (${r.bookmark}), subscribed at ${sub}`, rt, bm,
              rows: new Map(r.rows.map((x) => [Number(x[0]), Number(x[1])])) });
          }
        }
        await w.done();
        await checkReadThenSubscribe(c, readers);
      } finally {
        await w.stop();
      }
    });

  test('a hot-read cache hit answers the bookmark of the snapshot it was read on', { timeout: 60000 }, async () => {
    assert.ok((await c.waitConverged(['kv'], 30000)).ok);
    const before = await c.metric('b', 'edgelite_router_cache_hits_total');
    const sql = 'SELECT id, v FROM kv WHERE id < 2000 ORDER BY id';
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await c.sql('b', sql));
    const hits = (await c.metric('b', 'edgelite_router_cache_hits_total')) - before;
    assert.ok(hits >= 1, `no cache hit in ${answers.length} identical reads`);
    for (const a of answers) {
      assert.ok(a.ok, JSON.stringify(a.error));
      assert.equal(a.bookmark, answers[0].bookmark, 'no write happened: every answer has the same bookmark');
    }
    // Nothing more to come from that bookmark on this table: a write after it is the next event.
    const s = await openRt(c.url('c'));
    assert.equal((await s.subscribe({ id: 1, tables: ['kv'], from: answers[3].bookmark })).type, 'ready');
    assert.equal(s.events.length, 0, JSON.stringify(s.events));
    assert.ok((await c.sql('a', 'UPDATE kv SET v = v + 1 WHERE id = 1000')).ok);
    const ev = await s.waitFor((m) => m.type === 'change', 20000);
    assert.equal(ev.origin, 'a');
    assert.equal(ev.pk, 1000);
    await s.close();
  });
});
