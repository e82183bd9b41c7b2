// SPDX-License-Identifier: MIT
// Clocks (issue 8, item 7): each region estimates every peer's clock offset from PING/PONG and shows
// it (clock_offset_ms in /v1/status, edgelite_repl_peer_clock_offset_ms in /metrics); entries stamped
// more than replication.max_clock_skew_ms (500) ahead are counted; and a region whose clock ran
// ahead and is restarted with a correct clock still wins with its later writes (the HLC restarts
// from the highest stamp stored, and an entry that saw a version overwrites it whatever the stamps).
// Regions run with `serve --clock-offset-ms`: a 2 minutes ahead, b 3 s ahead, c on time.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { startCluster } from './lib/cluster.mjs';

describe('repl_schema_clock', { timeout: 120000 }, () => {
  let c;
  const ok = async (id, sql, args = []) => {
    const r = await c.sql(id, sql, args);
    assert.ok(r.ok, `${id}: ${sql}: HTTP ${r.status} ${JSON.stringify(r.error)}`);
    return r;
  };
  const valueIn = async (id) => {
    const rows = await c.rows(id, 'SELECT v FROM clocked WHERE id = 1');
    return rows.length ? rows[0][0] : undefined;
  };

  before(async () => {
    c = await startCluster({
      regions: 3,
      regionArgs: { a: ['--clock-offset-ms', '120000'], b: ['--clock-offset-ms', '3000'] },
    });
    await c.createTable('clocked', 'CREATE TABLE clocked (id INTEGER PRIMARY KEY, v TEXT)');
  });
  after(async () => { if (c) await c.destroy(); });

  test('every link estimates its peer clock offset; entries from a clock ahead are counted', async () => {
    // PINGs go out every second or so; wait for an estimate.
    const st = await c.waitFor(async () => {
      const s = await c.status('c');
      return s.peers.every((p) => p.clock_offset_ms !== null) ? s : null;
    }, 15000);
    assert.ok(st, 'no clock offset estimate from c');
    const off = Object.fromEntries(st.peers.map((p) => [p.region, p.clock_offset_ms]));
    // Loopback round trips are short; a loaded machine may add a few hundred ms of error.
    assert.ok(Math.abs(off.a - 120000) < 1000, `offset of a seen from c: ${off.a}`);
    assert.ok(Math.abs(off.b - 3000) < 1000, `offset of b seen from c: ${off.b}`);
    const m = await c.metric('c', 'edgelite_repl_peer_clock_offset_ms{peer="b"}');
    assert.ok(Math.abs(m - 3000) < 1000, `metric offset of b: ${m}`);
    assert.equal((await c.status('c')).max_clock_skew_ms, 500);

    await ok('b', "INSERT INTO clocked VALUES (2, 'from b')");
    const counted = await c.waitFor(async () => (await c.status('c')).skewed_entries_total >= 1, 10000);
    assert.ok(counted, 'an entry 3 s ahead was not counted');
    assert.ok(await c.metric('c', 'edgelite_repl_skewed_entries_total') >= 1);
  });

  test('a region restarted with a correct clock after running ahead: its later write wins everywhere', async () => {
    await ok('a', "INSERT INTO clocked VALUES (1, 'written while ahead')");
    const seen = await c.waitFor(async () => {
      for (const id of c.ids) if ((await valueIn(id)) !== 'written while ahead') return false;
      return true;
    }, 15000);
    assert.ok(seen, 'the first write did not reach every region');
    c.setArgs('a', []);
    await c.restart('a');
    await ok('a', "UPDATE clocked SET v = 'written after the restart' WHERE id = 1");
    const conv = await c.waitFor(async () => {
      for (const id of c.ids) if ((await valueIn(id)) !== 'written after the restart') return false;
      return true;
    }, 15000);
    const now = {};
    for (const id of c.ids) now[id] = await valueIn(id);
    assert.ok(conv, `the later write lost somewhere: ${JSON.stringify(now)}`);
  });
});
