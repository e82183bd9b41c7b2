// SPDX-License-Identifier: MIT
// The model-based cluster test (issue 8, "The test that proves it").
//
// Three real `edgelite serve` processes (us-west-2, eu-central-1, ap-southeast-1) with
// `--emulate-wan deployment/regions.json`, an application schema with everything a real one has:
//   parents/children   FOREIGN KEY ... ON DELETE CASCADE
//   users              a secondary UNIQUE column (email), an AFTER INSERT and an AFTER UPDATE
//                      trigger that write into audit
//   audit              filled only by those triggers (INTEGER PRIMARY KEY left to SQLite)
//   orders             id INTEGER PRIMARY KEY, filled WITHOUT explicit ids
//   ALTER TABLE users ADD COLUMN tier ... partway through the load
// Every region writes at once through the real @libsql/client while regions are SIGKILLed and
// restarted and SIGSTOPped and resumed. After the load, once the cluster is quiet (bounded wait):
//   1. every region is byte-identical: schema (sqlite_master) and every user table in pk order;
//   2. every acknowledged insert is present (orders with the id the client was told), unless an
//      acknowledged (or possibly committed) later write removed it, or /v1/conflicts records it;
//      every acknowledged user insert that is present has exactly one audit row;
//   3. `_edge_apply_errors` is empty; 4. no region exited on its own; 5. idle for 3 s, no region
//      logs more than a few lines (no retry loop).
// The test keeps a model of every write and its outcome: ok (acknowledged), fail (the server
// answered with a SQLite error: nothing committed) or unknown (no answer: may have committed).
//
// Seeded: EDGE_SEED=N replays the same operation plan (op k of region r is a function of the seed
// alone; the interleaving of the three regions and of the faults is real time, not replayable).
// Default load 45 s (whole test under 2 minutes); EDGE_CLUSTER_SECONDS=N or EDGE_LONG=1 (600 s).
// Skipped unless EDGE_CLUSTER=1 while the replication fixes of issue 8 land.
// Run alone, without npm:  EDGE_CLUSTER=1 EDGE_SEED=7 node --test tests/cluster/replication_model.test.mjs
// (see docs/testing.md).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { sleep, startCluster } from '../client/lib/cluster.mjs';
import { uvarint } from '../client/lib/peer_wire.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const WAN = path.resolve(here, '..', '..', 'deployment', 'regions.json');
const IDS = ['us-west-2', 'eu-central-1', 'ap-southeast-1'];
const TAG = { 'us-west-2': 'w', 'eu-central-1': 'e', 'ap-southeast-1': 'a' };

const ENABLED = process.env.EDGE_CLUSTER !== '0';
const SEED = process.env.EDGE_SEED !== undefined && process.env.EDGE_SEED !== ''
  ? Number(process.env.EDGE_SEED) : crypto.randomInt(1, 2 ** 31);
const LOAD_S = Number(process.env.EDGE_CLUSTER_SECONDS || (process.env.EDGE_LONG === '1' ? 600 : 45));
const QUIESCE_MS = Math.max(45000, Math.min(LOAD_S * 1000, 180000));
const WORKERS_PER_REGION = 2;
const REQ_TIMEOUT_MS = 8000;
const EMAILS = 20; // shared pool of users.email values: small enough that regions collide on it
// EDGE_CLUSTER_OPS=insertParent,updateParent,... keeps only those kinds of operation (to narrow a failure).
const ONLY = process.env.EDGE_CLUSTER_OPS ? new Set(process.env.EDGE_CLUSTER_OPS.split(',')) : null;

// ---- the plan: a deterministic function of the seed ----------------------------------------

/** sfc32 seeded from sha256(label): a fast PRNG in [0, 1) whose stream depends only on label. */
export function prng(label) {
  const h = crypto.createHash('sha256').update(String(label)).digest();
  let a = h.readUInt32LE(0), b = h.readUInt32LE(4), c = h.readUInt32LE(8), d = h.readUInt32LE(12);
  const next = () => {
    a >>>= 0; b >>>= 0; c >>>= 0; d >>>= 0;
    const t = (a + b + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) >>> 0;
    return t / 4294967296;
  };
  for (let i = 0; i < 12; i++) next();
  return next;
}

const WEIGHTS = [
  ['insertUser', 14], ['updateUserName', 7], ['updateUserEmail', 5], ['updateUserTier', 3], ['deleteUser', 3],
  ['insertParent', 8], ['updateParent', 10], ['deleteParent', 2],
  ['insertChild', 14], ['updateChild', 4], ['deleteChild', 2],
  ['insertOrder', 14],
];
const MIX = WEIGHTS.filter(([k]) => !ONLY || ONLY.has(k));
const WEIGHT_SUM = MIX.reduce((s, [, w]) => s + w, 0);

/**
 * The operation stream of one region: op(k) is the k-th operation, the same for the same
 * (seed, region) however fast or slow the cluster runs. Targets of updates and deletes are drawn
 * from the id space every region generates (kind.region-tag.n), biased to recent ids; a target
 * that does not exist where the op runs simply matches no row.
 */
export function regionPlan(seed, region) {
  const rnd = prng(`${seed}:plan:${region}`);
  const pick = (n) => Math.floor(rnd() * n);
  const ops = [];
  const made = { u: 0, p: 0, c: 0, o: 0 };
  const target = (kind, own = 1 / IDS.length) => {
    // Another region's counters are not known here; this region's own count is a fair estimate
    // because every region runs the same mix at about the same rate.
    const n = Math.max(1, made[kind]);
    const back = Math.floor(rnd() * rnd() * Math.min(n, 400));
    const r = rnd() < own ? region : IDS[pick(IDS.length)];
    return `${kind}.${TAG[r]}.${Math.max(0, n - 1 - back)}`;
  };
  const gen = () => {
    let x = rnd() * WEIGHT_SUM;
    let kind = MIX[MIX.length - 1][0];
    for (const [k, w] of MIX) {
      if (x < w) { kind = k; break; }
      x -= w;
    }
    const k = ops.length;
    const tag = TAG[region];
    // Mostly fresh addresses; one in four from the small shared pool, where regions collide.
    const email = () => (rnd() < 0.25 ? `e${pick(EMAILS)}@example.test` : `${tag}${k}@example.test`);
    switch (kind) {
      case 'insertUser': {
        const id = `u.${tag}.${made.u++}`;
        return { kind, table: 'users', key: id, sql: 'INSERT INTO users (id, email, name) VALUES (?, ?, ?)',
          args: [id, email(), `name ${k}`] };
      }
      case 'updateUserName': {
        const id = target('u');
        return { kind, table: 'users', key: id, sql: 'UPDATE users SET name = ? WHERE id = ?', args: [`renamed ${tag}${k}`, id] };
      }
      case 'updateUserEmail': {
        const id = target('u');
        return { kind, table: 'users', key: id, sql: 'UPDATE users SET email = ? WHERE id = ?', args: [email(), id] };
      }
      case 'updateUserTier': {
        // Fails with "no such column" until the ALTER TABLE has reached the region.
        const id = target('u');
        return { kind, table: 'users', key: id, sql: 'UPDATE users SET tier = ? WHERE id = ?', args: [pick(5), id] };
      }
      case 'deleteUser': {
        const id = target('u');
        return { kind, table: 'users', key: id, sql: 'DELETE FROM users WHERE id = ?', args: [id], removes: true };
      }
      case 'insertParent': {
        const id = `p.${tag}.${made.p++}`;
        return { kind, table: 'parents', key: id, sql: 'INSERT INTO parents (id, name, v) VALUES (?, ?, 0)',
          args: [id, `parent ${k}`] };
      }
      case 'updateParent': {
        const id = target('p');
        return { kind, table: 'parents', key: id, sql: 'UPDATE parents SET name = ?, v = v + 1 WHERE id = ?',
          args: [`p-renamed ${tag}${k}`, id] };
      }
      case 'deleteParent': {
        const id = target('p');
        return { kind, table: 'parents', key: id, sql: 'DELETE FROM parents WHERE id = ?', args: [id], removes: true };
      }
      case 'insertChild': {
        const id = `c.${tag}.${made.c++}`;
        const parent = target('p', 0.5); // half of them this region's own parents
        return { kind, table: 'children', key: id, parent,
          sql: 'INSERT INTO children (id, parent_id, note) VALUES (?, ?, ?)', args: [id, parent, `child ${k}`] };
      }
      case 'updateChild': {
        const id = target('c');
        return { kind, table: 'children', key: id, sql: 'UPDATE children SET note = ? WHERE id = ?', args: [`c-note ${tag}${k}`, id] };
      }
      case 'deleteChild': {
        const id = target('c');
        return { kind, table: 'children', key: id, sql: 'DELETE FROM children WHERE id = ?', args: [id], removes: true };
      }
      default: { // insertOrder: the id is left to SQLite
        const item = `o.${tag}.${made.o++}`;
        return { kind: 'insertOrder', table: 'orders', key: item, sql: 'INSERT INTO orders (item) VALUES (?)', args: [item] };
      }
    }
  };
  return {
    op(k) {
      while (ops.length <= k) ops.push(gen());
      return ops[k];
    },
  };
}

/** The fault schedule: [{ atMs, region, fault: 'kill'|'stop', downMs }] within the load. */
export function faultPlan(seed, loadMs) {
  const rnd = prng(`${seed}:faults`);
  const out = [];
  for (let at = 2000 + Math.floor(rnd() * 2000); at < loadMs - 3000; ) {
    const downMs = 500 + Math.floor(rnd() * 2500);
    out.push({ atMs: at, region: IDS[Math.floor(rnd() * IDS.length)], fault: rnd() < 0.4 ? 'kill' : 'stop', downMs });
    at += downMs + 2000 + Math.floor(rnd() * 4000);
  }
  return out;
}

/** When and where the ALTER TABLE runs. */
export function alterPlan(seed, loadMs) {
  const rnd = prng(`${seed}:alter`);
  return { atMs: Math.floor(loadMs * (0.3 + 0.2 * rnd())), region: IDS[Math.floor(rnd() * IDS.length)],
    sql: 'ALTER TABLE users ADD COLUMN tier INTEGER NOT NULL DEFAULT 0' };
}

/** A digest of the first n ops of every region and of the schedules (printed, compared). */
export function planDigest(seed, n, loadMs) {
  const h = crypto.createHash('sha256');
  for (const r of IDS) {
    const p = regionPlan(seed, r);
    for (let k = 0; k < n; k++) h.update(JSON.stringify(p.op(k)));
  }
  h.update(JSON.stringify(faultPlan(seed, loadMs)));
  h.update(JSON.stringify(alterPlan(seed, loadMs)));
  return h.digest('hex').slice(0, 16);
}

// ---- helpers --------------------------------------------------------------------------------

/** The primary-key bytes edgelite stores for a row (src/repl/capture.c value encoding), as hex(). */
function pkHex(values) {
  const out = [];
  for (const v of values) {
    if (typeof v === 'bigint' || typeof v === 'number') {
      const i = BigInt(v);
      out.push(1);
      out.push(...uvarint(i >= 0n ? i << 1n : ((-i) << 1n) - 1n));
    } else {
      const b = Buffer.from(String(v), 'utf8');
      out.push(3);
      out.push(...uvarint(b.length));
      out.push(...b);
    }
  }
  return Buffer.from(out).toString('hex').toUpperCase();
}

/** Raw Hrana rows (integers stay exact decimal strings) of a query, or throws. */
async function rawRows(c, id, sqlText, args = []) {
  const r = await c.sql(id, sqlText, args, {}, 30000);
  if (!r.ok) throw new Error(`${id}: ${sqlText}: HTTP ${r.status} ${JSON.stringify(r.error)}`);
  const res = r.json.results[0].response.result;
  return { cols: res.cols.map((x) => x.name), rows: res.rows };
}

const cell = (v) => (v.type === 'null' ? null : v.type === 'blob' ? `blob:${v.base64}` : v.value);

/** Schema and every user table of a region, rows in primary-key order. */
async function dump(c, id) {
  const schema = (await rawRows(c, id,
    "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE '\\_edge%' ESCAPE '\\' " +
    "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY type, name")).rows.map((r) => r.map(cell));
  const tables = {};
  for (const [type, name] of schema) {
    if (type !== 'table') continue;
    const info = (await rawRows(c, id, 'SELECT name, pk FROM pragma_table_info(?) ORDER BY cid', [name])).rows
      .map((r) => r.map(cell));
    const pkCols = info.filter((r) => Number(r[1]) > 0).sort((x, y) => Number(x[1]) - Number(y[1])).map((r) => r[0]);
    const q = (s) => `"${s.replace(/"/g, '""')}"`;
    const order = (pkCols.length ? pkCols : ['rowid']).map(q).join(', ');
    const { cols, rows } = await rawRows(c, id, `SELECT * FROM ${q(name)} ORDER BY ${order}`);
    const pkIdx = pkCols.map((p) => cols.indexOf(p));
    const byPk = new Map();
    for (const r of rows) {
      const vals = r.map(cell);
      byPk.set(JSON.stringify(pkIdx.map((i) => vals[i])), vals);
    }
    tables[name] = { cols, pkCols, byPk, text: rows.map((r) => JSON.stringify(r)).join('\n') };
  }
  return { schema, tables };
}

/** Lines describing how region b's dump differs from region a's: the first differing schema row,
 * then per table a count line and the first differing row. Empty when identical. */
function diffDumps(aId, a, bId, b) {
  const out = [];
  const sa = a.schema.map((r) => JSON.stringify(r));
  const sb = b.schema.map((r) => JSON.stringify(r));
  for (let i = 0; i < Math.max(sa.length, sb.length); i++) {
    if (sa[i] !== sb[i]) {
      out.push(`schema row ${i}: ${aId} ${sa[i] ?? '(none)'} | ${bId} ${sb[i] ?? '(none)'}`);
      break;
    }
  }
  for (const t of new Set([...Object.keys(a.tables), ...Object.keys(b.tables)])) {
    const ta = a.tables[t], tb = b.tables[t];
    if (!ta || !tb) { out.push(`table ${t}: only in ${ta ? aId : bId}`); continue; }
    if (ta.text === tb.text && JSON.stringify(ta.cols) === JSON.stringify(tb.cols)) continue;
    if (JSON.stringify(ta.cols) !== JSON.stringify(tb.cols)) {
      out.push(`table ${t}: columns ${aId} ${JSON.stringify(ta.cols)} | ${bId} ${JSON.stringify(tb.cols)}`);
    }
    let shown = 0;
    const keys = [...new Set([...ta.byPk.keys(), ...tb.byPk.keys()])].sort();
    let missA = 0, missB = 0, differ = 0;
    for (const k of keys) {
      const ra = ta.byPk.get(k), rb = tb.byPk.get(k);
      if (ra && rb && JSON.stringify(ra) === JSON.stringify(rb)) continue;
      if (!ra) missA++; else if (!rb) missB++; else differ++;
      if (shown++ < 1) {
        out.push(`table ${t}, first differing pk ${k}: ${aId} ${ra ? JSON.stringify(ra) : '(missing)'} | ` +
          `${bId} ${rb ? JSON.stringify(rb) : '(missing)'}`);
      }
    }
    out.push(`table ${t}: ${ta.byPk.size} rows in ${aId}, ${tb.byPk.size} in ${bId}; ${missA} only in ${bId}, ` +
      `${missB} only in ${aId}, ${differ} differ`);
  }
  return out;
}

/** Conflicts a region records, as a Set of "table|PKHEX", read page by page from /v1/conflicts
 * (client SQL cannot read edgelite's _edge_* tables: the sandbox refuses it). */
async function conflictKeys(c, id) {
  const keys = new Set();
  let total = 0;
  let before = null;
  for (let page = 0; page < 1000; page++) {
    const q = `/v1/conflicts?limit=10000${before === null ? '' : `&before=${before}`}`;
    const res = await fetch(c.url(id) + q, { signal: AbortSignal.timeout(30000) });
    assert.equal(res.status, 200, `${id} ${q}: ${res.status}`);
    const cf = await res.json();
    total = cf.total;
    for (const e of cf.conflicts) keys.add(`${e.table}|${e.pk_hex}`);
    if (cf.conflicts.length === 0 || cf.next_before === undefined) break;
    before = cf.next_before;
  }
  return { keys, total };
}

/** Entries a region could not apply (GET /v1/apply-errors). */
async function applyErrors(c, id) {
  const res = await fetch(c.url(id) + '/v1/apply-errors', { signal: AbortSignal.timeout(10000) });
  const text = await res.text();
  assert.equal(res.status, 200, `${id} GET /v1/apply-errors: ${res.status} ${text.slice(0, 200)}`);
  const j = JSON.parse(text);
  const list = Array.isArray(j) ? j : (j.errors ?? j.apply_errors ?? j.entries ?? []);
  return { source: 'GET /v1/apply-errors', count: Number(j.total ?? list.length), sample: list.slice(0, 3) };
}

// ---- the test -------------------------------------------------------------------------------

describe('plan', () => {
  test('the operation plan is a function of the seed', () => {
    assert.equal(planDigest(SEED, 300, 45000), planDigest(SEED, 300, 45000));
    assert.notEqual(planDigest(SEED, 300, 45000), planDigest(SEED + 1, 300, 45000));
    // Interleaved generation (as concurrent workers ask for ops) gives the same stream.
    const a = regionPlan(SEED, IDS[1]), b = regionPlan(SEED, IDS[1]);
    const seq = [];
    for (let k = 0; k < 200; k++) seq.push(JSON.stringify(a.op(k)));
    assert.deepEqual([199, 0, 57, 120].map((k) => JSON.stringify(b.op(k))), [199, 0, 57, 120].map((k) => seq[k]));
  });
});

describe('replication model: 3 WAN regions, real schema, faults', {
  skip: ENABLED ? false : 'EDGE_CLUSTER=0',
  timeout: LOAD_S * 1000 + QUIESCE_MS + 90000,
}, () => {
  let c;
  const loadMs = LOAD_S * 1000;
  const logFile = path.join(os.tmpdir(), `edgelite-model-${SEED}-${process.pid}.jsonl`);
  const log = [];
  const say = (m) => console.log(`# [seed ${SEED}] ${m}`);

  before(async () => {
    say(`plan ${planDigest(SEED, 300, loadMs)}, load ${LOAD_S} s; replay with EDGE_CLUSTER=1 EDGE_SEED=${SEED}`);
    c = await startCluster({ ids: IDS, extraArgs: ['--log-level', 'warn', '--emulate-wan', WAN] });
    const ddl = [
      ['parents', 'CREATE TABLE parents (id TEXT PRIMARY KEY, name TEXT NOT NULL, v INTEGER NOT NULL)'],
      ['children', 'CREATE TABLE children (id TEXT PRIMARY KEY, ' +
        'parent_id TEXT NOT NULL REFERENCES parents(id) ON DELETE CASCADE, note TEXT)'],
      ['users', 'CREATE TABLE users (id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT)'],
      ['audit', 'CREATE TABLE audit (id INTEGER PRIMARY KEY, tbl TEXT NOT NULL, row_id TEXT NOT NULL, ' +
        'op TEXT NOT NULL, detail TEXT)'],
      ['orders', 'CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT NOT NULL)'],
    ];
    for (const [t, sql] of ddl) await c.createTable(t, sql, { timeoutMs: 30000 });
    for (const sql of [
      'CREATE INDEX children_parent ON children(parent_id)',
      "CREATE TRIGGER users_audit_insert AFTER INSERT ON users BEGIN INSERT INTO audit (tbl, row_id, op, detail) " +
        "VALUES ('users', NEW.id, 'insert', NEW.email); END",
      "CREATE TRIGGER users_audit_update AFTER UPDATE ON users BEGIN INSERT INTO audit (tbl, row_id, op, detail) " +
        "VALUES ('users', NEW.id, 'update', NEW.email); END",
    ]) {
      const r = await c.sql(IDS[0], sql);
      if (!r.ok) throw new Error(`${sql}: ${JSON.stringify(r.error)}`);
    }
    const ok = await c.waitFor(async () => {
      for (const id of IDS) {
        const r = await c.sql(id, "SELECT count(*) FROM sqlite_master WHERE type IN ('index', 'trigger') " +
          "AND name IN ('children_parent', 'users_audit_insert', 'users_audit_update')");
        if (!r.ok || r.rows[0][0] !== 3) return false;
      }
      return true;
    }, 30000);
    if (!ok) throw new Error('the index and triggers did not reach every region');
  });

  after(async () => { if (c) await c.destroy(); });

  test('every region ends byte-identical, no acknowledged insert is lost, nothing fails to apply', async () => {
    const start = Date.now();
    const endAt = start + loadMs;
    const clients = {};
    for (const id of IDS) {
      clients[id] = await c.client(id, {
        intMode: 'bigint',
        fetch: (input, init) => fetch(input, { ...init, signal: AbortSignal.timeout(REQ_TIMEOUT_MS) }),
      });
    }
    const classify = (e) => (typeof e?.code === 'string' && e.code.startsWith('SQLITE_') ? 'fail' : 'unknown');

    // Writers: WORKERS_PER_REGION per region, each taking the region's next op from the plan.
    const plans = Object.fromEntries(IDS.map((id) => [id, regionPlan(SEED, id)]));
    const next = Object.fromEntries(IDS.map((id) => [id, 0]));
    const errs = new Map();
    const writer = async (id, w) => {
      const think = prng(`${SEED}:think:${id}:${w}`);
      for (let guard = 0; guard < 10_000_000 && Date.now() < endAt; guard++) {
        const k = next[id]++;
        const op = plans[id].op(k);
        const rec = { r: id, k, kind: op.kind, table: op.table, key: op.key, parent: op.parent, removes: !!op.removes,
          args: op.args, t0: Date.now() - start };
        try {
          const res = await clients[id].execute({ sql: op.sql, args: op.args });
          rec.outcome = 'ok';
          rec.affected = res.rowsAffected;
          if (op.kind === 'insertOrder') rec.rowid = String(res.lastInsertRowid);
        } catch (e) {
          rec.outcome = classify(e);
          rec.err = String(e?.message ?? e).slice(0, 160);
          const key = `${op.kind}: ${rec.outcome}: ${rec.err.replace(/[0-9a-f]{8,}|\d+/g, 'N').slice(0, 90)}`;
          errs.set(key, (errs.get(key) ?? 0) + 1);
        }
        rec.t1 = Date.now() - start;
        log.push(rec);
        await sleep(2 + Math.floor(think() * 30));
      }
    };

    // The ALTER TABLE, retried until it is acknowledged (or the column turns out to exist).
    const alter = alterPlan(SEED, loadMs);
    const alterDone = (async () => {
      await sleep(alter.atMs);
      for (let attempt = 0; attempt < 1000 && Date.now() < endAt + 20000; attempt++) {
        const t0 = Date.now() - start;
        try {
          await clients[alter.region].execute(alter.sql);
          log.push({ r: alter.region, kind: 'alter', outcome: 'ok', t0, t1: Date.now() - start, attempt });
          return true;
        } catch (e) {
          const msg = String(e?.message ?? e);
          log.push({ r: alter.region, kind: 'alter', outcome: classify(e), err: msg.slice(0, 160), t0, attempt });
          if (/duplicate column/i.test(msg)) return true; // an earlier, unanswered attempt committed
          await sleep(500);
        }
      }
      return false;
    })();

    // Faults, one at a time, on the plan's schedule.
    const faults = faultPlan(SEED, loadMs);
    const faultsDone = (async () => {
      for (const f of faults) {
        const wait = start + f.atMs - Date.now();
        if (wait > 0) await sleep(wait);
        if (Date.now() >= endAt) break;
        log.push({ kind: 'fault', fault: f.fault, r: f.region, t0: Date.now() - start, downMs: f.downMs });
        if (f.fault === 'kill') {
          await c.kill(f.region, 'SIGKILL');
          await sleep(f.downMs);
          await c.restart(f.region);
        } else {
          c.pause(f.region);
          await sleep(f.downMs);
          c.resume(f.region);
        }
        log.push({ kind: 'recovered', r: f.region, t0: Date.now() - start });
      }
    })();

    const writers = [];
    for (const id of IDS) for (let w = 0; w < WORKERS_PER_REGION; w++) writers.push(writer(id, w));
    await Promise.all(writers);
    await faultsDone;
    const altered = await alterDone;
    for (const cl of Object.values(clients)) cl.close();
    const counts = { ok: 0, fail: 0, unknown: 0 };
    for (const r of log) if (r.k !== undefined) counts[r.outcome]++;
    const ran = log.filter((r) => r.kind === 'fault');
    say(`load done: ${log.filter((r) => r.k !== undefined).length} writes (${JSON.stringify(counts)}); faults: ` +
      `${ran.filter((f) => f.fault === 'kill').length} SIGKILL+restart, ${ran.filter((f) => f.fault === 'stop').length} ` +
      `SIGSTOP+SIGCONT (${ran.map((f) => `${f.fault} ${f.r} at ${f.t0} ms for ${f.downMs} ms`).join(', ')}); ` +
      `alter from ${alter.region} ${altered ? 'acknowledged' : 'NOT acknowledged'}`);
    say(`errors by kind: ${JSON.stringify([...errs.entries()].sort((x, y) => y[1] - x[1]).slice(0, 12))}`);

    // Quiescence: every region up, every link connected with nothing pending, dumps equal twice.
    // Idle links with dumps that stay unequal and unchanged for STABLE_MS have diverged for good:
    // stop waiting then.
    const STABLE_MS = 8000;
    const q0 = Date.now();
    let dumps = null, quiet = false, lastStatus = '', stableSince = 0, stableKey = '', idleApart = false;
    for (let guard = 0; guard < 100000 && Date.now() - q0 < QUIESCE_MS; guard++) {
      try {
        const st = await Promise.all(IDS.map((id) => c.status(id)));
        lastStatus = st.map((s) => `${s.region}: ${s.peers.map((p) => `${p.region} ${p.connected ? 'up' : 'DOWN'} ` +
          `pending ${p.pending}`).join(', ')}`).join('; ');
        const idle = st.every((s) => s.peers.every((p) => p.connected && p.pending === 0));
        if (idle) {
          const d = await Promise.all(IDS.map((id) => dump(c, id)));
          const same = d.every((x) => diffDumps(IDS[0], d[0], 'x', x).length === 0);
          if (same && dumps && diffDumps(IDS[0], dumps[0], IDS[0], d[0]).length === 0) { dumps = d; quiet = true; break; }
          dumps = d;
          const key = crypto.createHash('sha256').update(JSON.stringify(d.map((x) => [x.schema,
            Object.values(x.tables).map((t) => t.text)]))).digest('hex');
          if (key !== stableKey) { stableKey = key; stableSince = Date.now(); }
          if (Date.now() - stableSince >= STABLE_MS) { idleApart = true; break; }
        } else {
          stableKey = '';
        }
      } catch (e) {
        lastStatus = `error: ${e.message}`;
      }
      await sleep(500);
    }
    if (!quiet || !dumps) dumps = await Promise.all(IDS.map((id) => dump(c, id)));
    say(`quiescence ${quiet ? 'reached' : idleApart ? 'NOT reached (idle but different)' : 'NOT reached'} after ${Date.now() - q0} ms (${lastStatus})`);

    // An idle cluster does no work: over IDLE_MS with no writes, a region logs (almost) nothing, so
    // an entry that cannot apply is not retried and logged in a loop (issue 8, item 8). CPU time is
    // printed for the record, never asserted.
    const IDLE_MS = 3000, IDLE_LOG_LINES = 30;
    const cpuTicks = (id) => {
      try {
        const f = fs.readFileSync(`/proc/${c.regions[id].proc.pid}/stat`, 'utf8').split(') ')[1].split(' ');
        return Number(f[11]) + Number(f[12]); // utime + stime, in clock ticks
      } catch { return NaN; }
    };
    const marks = Object.fromEntries(IDS.map((id) => [id, { tail: c.stderr(id).slice(-200), cpu: cpuTicks(id) }]));
    await sleep(IDLE_MS);
    const idleLog = {};
    for (const id of IDS) {
      const now = c.stderr(id);
      const at = marks[id].tail ? now.lastIndexOf(marks[id].tail) : -1;
      // Not found: nothing was logged before, or so much since that the capped capture lost the mark.
      const fresh = at >= 0 ? now.slice(at + marks[id].tail.length) : now;
      const lines = fresh.split('\n').filter((l) => l.trim() !== '');
      idleLog[id] = { lines: lines.length, sample: lines.slice(-2), cpuTicks: cpuTicks(id) - marks[id].cpu };
    }
    say(`idle ${IDLE_MS} ms: ${IDS.map((id) => `${id} ${idleLog[id].lines} log lines, ${idleLog[id].cpuTicks} CPU ticks`).join('; ')}`);

    // ---- checks ----
    const problems = [];
    for (const id of IDS) {
      if (idleLog[id].lines > IDLE_LOG_LINES) {
        problems.push(`region ${id} logged ${idleLog[id].lines} lines in ${IDLE_MS} ms with no writes (a retry loop?), ` +
          `e.g. ${JSON.stringify(idleLog[id].sample)}`);
      }
    }
    if (c.unexpectedExits.length) problems.push(`regions exited on their own: ${JSON.stringify(c.unexpectedExits)}`);
    if (!altered) problems.push(`the ALTER TABLE from ${alter.region} was never acknowledged`);
    if (idleApart) {
      problems.push(`every link idle (connected, nothing pending) for ${STABLE_MS} ms while the regions differ`);
    } else if (!quiet) {
      problems.push(`no quiescence within ${QUIESCE_MS} ms of the end of the load (links: ${lastStatus}); ` +
        'entries still pending there mean a blocked stream');
    }

    // 1. Byte-identical.
    for (const id of IDS.slice(1)) {
      const d = diffDumps(IDS[0], dumps[0], id, dumps[IDS.indexOf(id)]);
      if (d.length) problems.push(`region ${id} differs from ${IDS[0]}:\n    ${d.join('\n    ')}`);
    }

    // 2. The model: acknowledged inserts present unless removed or recorded as a conflict.
    const ok = log.filter((r) => r.k !== undefined);
    const removers = new Map(); // "table|key" -> [records of deletes that may have removed it]
    for (const r of ok) {
      if (r.removes && (r.outcome === 'unknown' || (r.outcome === 'ok' && r.affected > 0))) {
        const k = `${r.table}|${r.key}`;
        if (!removers.has(k)) removers.set(k, []);
        removers.get(k).push(r);
      }
    }
    for (const [ri, id] of IDS.entries()) {
      const d = dumps[ri];
      const { keys: conflicts } = await conflictKeys(c, id);
      const inConflict = (table, pkVals) => conflicts.has(`${table}|${pkHex(pkVals)}`);
      const lost = [];
      const why = new Map(); // category -> count
      const note = (cat, line) => {
        why.set(cat, (why.get(cat) ?? 0) + 1);
        if (why.get(cat) <= 2) lost.push(line); // a few of each kind: one kind must not hide the others
      };
      const auditCount = new Map();
      const audit = d.tables.audit;
      if (audit) {
        const ci = { tbl: audit.cols.indexOf('tbl'), row: audit.cols.indexOf('row_id'), op: audit.cols.indexOf('op') };
        for (const row of audit.byPk.values()) {
          if (row[ci.tbl] === 'users' && row[ci.op] === 'insert') {
            auditCount.set(row[ci.row], (auditCount.get(row[ci.row]) ?? 0) + 1);
          }
        }
      }
      const ordersByItem = new Map();
      if (d.tables.orders) {
        const ii = d.tables.orders.cols.indexOf('item'), idi = d.tables.orders.cols.indexOf('id');
        for (const row of d.tables.orders.byPk.values()) ordersByItem.set(row[ii], row[idi]);
      }
      for (const r of ok) {
        if (r.outcome !== 'ok') continue;
        if (r.kind === 'insertUser' || r.kind === 'insertParent' || r.kind === 'insertChild') {
          const t = d.tables[r.table];
          const present = t && t.byPk.has(JSON.stringify([r.key]));
          if (present) {
            if (r.kind === 'insertUser' && (auditCount.get(r.key) ?? 0) !== 1) {
              note(`users with ${(auditCount.get(r.key) ?? 0) === 0 ? 'no' : 'several'} audit insert rows`, `users ${r.key} (acknowledged by ${r.r} at ${r.t1} ms) has ${auditCount.get(r.key) ?? 0} ` +
                "audit 'insert' rows, expected 1");
            }
            continue;
          }
          if (removers.has(`${r.table}|${r.key}`)) continue;
          // A conflict explains a missing row only where a constraint can make a row lose: a users row
          // whose email lost a UNIQUE race, a child whose parent was deleted concurrently (recorded on
          // the child or on the parent). Nothing but a delete removes a parent.
          if (r.kind !== 'insertParent' && inConflict(r.table, [r.key])) continue;
          if (r.kind === 'insertChild' && (removers.has(`parents|${r.parent}`) || inConflict('parents', [r.parent]))) continue;
          note(`${r.table} missing`, `${r.table} ${r.key} (acknowledged by ${r.r} at ${r.t1} ms${r.parent ? `, parent ${r.parent}` : ''}) ` +
            'is missing, with no delete and no conflict to explain it');
        } else if (r.kind === 'insertOrder') {
          // Ids left to SQLite must never collide across regions (issue 8, item 6): no conflict excuses
          // a lost order, and the id the client was told is the row's id everywhere.
          const at = ordersByItem.get(r.key);
          if (at === r.rowid) continue;
          note(at === undefined ? 'orders missing' : 'orders under another id', at === undefined
            ? `orders item ${r.key} (acknowledged by ${r.r} at ${r.t1} ms as id ${r.rowid}) is missing`
            : `orders item ${r.key} was acknowledged as id ${r.rowid} but is stored as id ${at}`);
        }
      }
      const orderConflicts = [...conflicts].filter((k) => k.startsWith('orders|')).length;
      if (orderConflicts) why.set('conflicts recorded on orders (ids SQLite assigned)', orderConflicts);
      if (lost.length || orderConflicts) {
        problems.push(`region ${id}: ${JSON.stringify(Object.fromEntries(why))}, e.g.:\n    ${lost.slice(0, 10).join('\n    ')}`);
      }
      // 3. Nothing failed to apply.
      const ae = await applyErrors(c, id);
      if (ae.count !== 0) problems.push(`region ${id}: ${ae.count} apply errors (${ae.source}): ${JSON.stringify(ae.sample)}`);
    }

    const summary = IDS.map((id, i) => `${id}: ${Object.entries(dumps[i].tables).map(([t, x]) => `${t}=${x.byPk.size}`).join(' ')}`);
    say(`final rows: ${summary.join('; ')}`);
    if (problems.length) {
      fs.writeFileSync(logFile, log.map((r) => JSON.stringify(r)).join('\n') + '\n');
      assert.fail(`seed ${SEED} (replay: EDGE_CLUSTER=1 EDGE_SEED=${SEED} node --test ` +
        `tests/cluster/replication_model.test.mjs; write log: ${logFile}):\n  ${problems.join('\n  ')}`);
    }
  });
});
