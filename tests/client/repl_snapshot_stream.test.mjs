// SPDX-License-Identifier: MIT
// Snapshots stream to disk: a region seeded from a database of ~80 MB (2 GiB with EDGE_LONG=1) never holds it in
// memory. The receiver's peak RSS (VmHWM) stays well below the database's size, and so does the serving node's
// growth while it sends; the copy arrives whole (same rows, same checksum) and is checked (size, SHA-256).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';

import { startCluster } from './lib/cluster.mjs';

const LONG = process.env.EDGE_LONG === '1';
// Under AddressSanitizer (make test-asan sets ASAN_OPTIONS) freed memory is held in a quarantine of 256 MiB by
// default, so every page SQLite frees while taking the backup would count as growth of the serving node. A small
// quarantine keeps the memory assertions meaningful in that build too (the nodes inherit this environment).
if (process.env.ASAN_OPTIONS !== undefined) {
  process.env.ASAN_OPTIONS += ':quarantine_size_mb=4:thread_local_quarantine_size_kb=64';
}
const CHUNK_ROWS = 250; // rows of 4 KiB per statement: ~1 MiB per entry, far below the 64 MiB frame
const CHUNKS = LONG ? 1000 : 40; // 40 MiB of rows (+ their log entries: ~80 MB file); 1 GiB (+ log: ~2 GiB)

function vmKb(pid, field) {
  const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'));
  return m ? Number(m[1]) : NaN;
}

describe('a large snapshot streams to disk', { timeout: LONG ? 3600000 : 240000 }, () => {
  let c;
  before(async () => {
    // The seeded region prints its ready line once the copy is in: minutes for the 2 GiB one.
    c = await startCluster({ regions: 2, proxies: 'none', extraArgs: ['--log-level', 'info'],
      readyTimeoutMs: LONG ? 1800000 : 15000 });
    await c.createTable('big', 'CREATE TABLE IF NOT EXISTS big (id INTEGER PRIMARY KEY, v BLOB)');
  });
  after(async () => { if (c) await c.destroy(); });

  test('the receiver and the sender stay far below the database size in memory', async () => {
    await c.stop('b');
    fs.rmSync(c.regions.b.dataDir, { recursive: true, force: true });
    for (let k = 0; k < CHUNKS; k++) {
      const r = await c.sql('a',
        'WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ?) ' +
        'INSERT INTO big SELECT ? + i, randomblob(4096) FROM s', [CHUNK_ROWS, k * CHUNK_ROWS], {}, 120000);
      assert.ok(r.ok, `insert ${k}: ${JSON.stringify(r.error)}`);
    }
    const dbFile = `${c.regions.a.dataDir}/edgelite.db`;
    // What a copy holds: the database file after a checkpoint (the WAL is folded in by the backup anyway).
    const want = await c.rows('a', 'SELECT count(*), sum(length(v)) FROM big');
    const sizeBytes = fs.statSync(dbFile).size + (fs.existsSync(`${dbFile}-wal`) ? fs.statSync(`${dbFile}-wal`).size : 0);
    const dbMb = sizeBytes / 1048576;
    assert.ok(dbMb >= (LONG ? 1500 : 60), `the database is only ${dbMb.toFixed(1)} MiB`);
    const senderPid = c.regions.a.proc.pid;
    const senderBefore = vmKb(senderPid, 'VmHWM');

    await c.restart('b');
    const m = c.stderr('b').match(/seeded from a snapshot of a \((\d+) bytes, sha256 ([0-9a-f]{64})\)/);
    assert.ok(m, `b was not seeded:\n${c.stderr('b').slice(-2000)}`);
    const recvPeakMb = vmKb(c.regions.b.proc.pid, 'VmHWM') / 1024;
    const senderGrowMb = (vmKb(senderPid, 'VmHWM') - senderBefore) / 1024;
    const copyMb = Number(m[1]) / 1048576;
    console.log(`# database ${dbMb.toFixed(1)} MiB, snapshot ${copyMb.toFixed(1)} MiB; receiver VmHWM ` +
      `${recvPeakMb.toFixed(1)} MiB; sender VmHWM grew ${senderGrowMb.toFixed(1)} MiB`);
    assert.ok(copyMb >= (LONG ? 1500 : 60), `the snapshot is only ${copyMb.toFixed(1)} MiB`);
    // Holding the copy in memory (as before) puts the peak above the copy's size; streaming keeps it at the
    // node's ordinary footprint.
    assert.ok(recvPeakMb < copyMb / 2, `receiver peak ${recvPeakMb.toFixed(1)} MiB for a ${copyMb.toFixed(1)} MiB copy`);
    // The sender's bar is the receiver's: half the copy. Its growth is not only the transfer's: glibc gives each
    // thread that allocates an arena of its own, and whether the backup's pool thread finds one the writes already
    // grew is chance; measured here, 1-4 MiB when it does and up to 27 MiB when it does not (with
    // MALLOC_ARENA_MAX=1, 1-2 MiB every time; the backup of a 90 MB database alone peaks 4 MiB above its start).
    // A sender that queued the copy grows by at least its size (85 MiB here).
    assert.ok(senderGrowMb < copyMb / 2, `sender grew ${senderGrowMb.toFixed(1)} MiB for a ${copyMb.toFixed(1)} MiB copy`);
    assert.deepEqual(await c.rows('b', 'SELECT count(*), sum(length(v)) FROM big'), want);
    // Row by row: the id and two slices of every blob, in id order.
    const digest = async (id) => (await c.rows(id,
      "SELECT group_concat(id || ':' || hex(substr(v, 1, 6)) || hex(substr(v, 4090, 6)), ',') " +
      'FROM (SELECT id, v FROM big ORDER BY id)'))[0][0];
    assert.deepEqual(await digest('b'), await digest('a'));
    // The partial file is gone and nothing of the copy is left next to either database.
    assert.ok(!fs.existsSync(`${c.regions.b.dataDir}/edgelite.db.seed`));
    assert.deepEqual(fs.readdirSync(c.regions.a.dataDir).filter((f) => f.includes('.snapshot-')), []);
  });
});
