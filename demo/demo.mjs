// SPDX-License-Identifier: MIT
// The multi-region demo workload (started by scripts/demo.sh once every region listens):
//
//   node demo/demo.mjs --duration S --region ID=URL [--region ID=URL ...]
//
// The first region is the primary. Every region gets its own @libsql/client and, concurrently:
// local point reads, eventual writes (events, its own profiles rows), strong transfers between
// accounts (forwarded to the primary, acknowledged by a majority) each followed by an async
// audit_log row, and updates of the same few "hot" profiles rows from every region to provoke
// conflicts. A live view runs meanwhile; then it waits for convergence, checks that every region
// holds identical data, and prints the summary. Exit status 1 when a check fails.
import { createRequire } from 'node:module';
import crypto from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { crdtSection } from './crdt.mjs';
import { pipeline, plain, status, conflictsRecorded, metrics } from './hrana.mjs';
import { Samples, fmtMs, nowMs, sleep } from './stats.mjs';
import { LiveView } from './view.mjs';

// The client is installed (pinned by a lockfile) in tests/client by scripts/bootstrap.sh.
const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '..', 'tests', 'client', 'package.json'));
const { createClient } = require('@libsql/client');

const ACCOUNTS = 20;
const START_BALANCE = 1000;
const HOT_ROWS = 5;
const LOCAL_OPS_PER_S = 80; // per region: reads + eventual writes; modest: the client and 3+ nodes share this machine
const HOT_UPDATES_PER_S = 15; // per region, on the same HOT_ROWS rows everywhere
const STRONG_WORKERS = 2; // per region, each one strong transfer at a time
const STRONG_PER_S = 10; // per loop at most
const MAX_OPS = 100000; // over all regions: the workload also stops here whatever --duration says
const LAG_SAMPLE_EVERY_MS = 1000; // per region: one event's bookmark is tracked until every region has it
const CONVERGE_TIMEOUT_MS = 20000;

const TABLES = {
  accounts: { ddl: 'CREATE TABLE IF NOT EXISTS accounts (id INTEGER PRIMARY KEY, owner TEXT NOT NULL, balance INTEGER NOT NULL)', num: 'balance' },
  profiles: { ddl: 'CREATE TABLE IF NOT EXISTS profiles (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score INTEGER NOT NULL, updated_by TEXT, updated_at INTEGER)', num: 'score' },
  events: { ddl: 'CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, region TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, at_ms INTEGER NOT NULL)', num: 'seq' },
  audit_log: { ddl: 'CREATE TABLE IF NOT EXISTS audit_log (id TEXT PRIMARY KEY, region TEXT NOT NULL, from_id INTEGER NOT NULL, to_id INTEGER NOT NULL, amount INTEGER NOT NULL, at_ms INTEGER NOT NULL)', num: 'amount' },
};

function parseArgs(argv) {
  const o = { duration: 15, regions: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--duration') o.duration = Number(argv[++i]);
    else if (a === '--region') {
      const [id, url] = String(argv[++i]).split(/=(.*)/s);
      o.regions.push({ id, url });
    } else throw new Error(`unknown argument '${a}'`);
  }
  if (!(o.duration > 0)) throw new Error('--duration must be a positive number of seconds');
  if (o.regions.length === 0) throw new Error('at least one --region ID=URL is required');
  return o;
}

const say = (s = '') => process.stdout.write(`${s}\n`);
const step = (what, t0, extra = '') => say(`demo: ${what.padEnd(46)} ${fmtMs(nowMs() - t0).padStart(7)} ms${extra ? `  ${extra}` : ''}`);
const rnd = (n) => Math.floor(Math.random() * n);

// A region as the workload sees it: clients, counters, samples.
function makeRegion(r, index) {
  return {
    ...r,
    index,
    client: createClient({ url: r.url }),
    reads: new Samples(),
    localWrites: new Samples(),
    strongWrites: new Samples(),
    replication: new Samples(), // event commit -> visible (by version vector) in every region
    writes: 0,
    ops: 0,
    events: 0,
    errors: new Map(), // kind -> { n, first }
    lagChecks: [],
    nextLagSampleAt: 0,
  };
}

function recordError(reg, kind, e) {
  const cur = reg.errors.get(kind);
  if (cur) cur.n++;
  else reg.errors.set(kind, { n: 1, first: `${e.code ?? ''} ${e.message}`.trim() });
}

async function waitReady(regions, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (let guard = 0; guard < 10000; guard++) {
    const st = await Promise.all(regions.map((r) => status(r.url).catch(() => null)));
    const ok = st.every((s, i) => s && s.region === regions[i].id &&
      (s.peers ?? []).length === regions.length - 1 && s.peers.every((p) => p.connected));
    if (ok) return st;
    if (Date.now() > deadline) {
      const bad = regions.filter((r, i) => !st[i] || st[i].region !== r.id ||
        !(st[i].peers ?? []).every((p) => p.connected)).map((r) => r.id);
      throw new Error(`regions not ready (peers not all connected, or another process answers on the port): ${bad.join(', ')}`);
    }
    await sleep(100);
  }
  throw new Error('waitReady: gave up');
}

async function createSchema(primary, regions) {
  for (const t of Object.values(TABLES)) await primary.client.execute(t.ddl);
  // Seeds go to the primary; accounts is strong, so the seed batch is acknowledged by a majority.
  await primary.client.batch(Array.from({ length: ACCOUNTS }, (_, i) => ({
    sql: 'INSERT OR IGNORE INTO accounts (id, owner, balance) VALUES (?, ?, ?)',
    args: [BigInt(i + 1), `owner-${i + 1}`, BigInt(START_BALANCE)],
  })), 'write');
  await primary.client.batch(Array.from({ length: HOT_ROWS }, (_, i) => ({
    sql: 'INSERT OR IGNORE INTO profiles (id, name, score, updated_by, updated_at) VALUES (?, ?, 0, ?, 0)',
    args: [BigInt(i + 1), `hot-${i + 1}`, primary.id],
  })), 'write');
  const names = Object.keys(TABLES);
  const deadline = Date.now() + 15000;
  for (const r of regions) {
    for (let guard = 0; ; guard++) {
      const have = await pipeline(r.url,
        `SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name IN (${names.map(() => '?').join(',')})`, names)
        .then((x) => plain(x.rows[0][0])).catch(() => 0);
      const seeded = have === names.length
        ? await pipeline(r.url, 'SELECT (SELECT count(*) FROM accounts) + (SELECT count(*) FROM profiles)')
          .then((x) => plain(x.rows[0][0])).catch(() => 0)
        : 0;
      if (seeded >= ACCOUNTS + HOT_ROWS) break;
      if (Date.now() > deadline || guard > 1000) throw new Error(`the schema did not reach ${r.id} within 15 s`);
      await sleep(50);
    }
  }
}

// Open-loop pacing: starts `fn` about `perS` times a second until `stop()` says so, with at most
// `maxInFlight` calls running, so one slow response does not lower the offered rate.
async function paced(perS, stop, fn, maxInFlight = 8) {
  const gap = 1000 / perS;
  const running = new Set();
  let next = nowMs();
  for (let guard = 0; guard < 10_000_000 && !stop(); guard++) {
    if (running.size >= maxInFlight) await Promise.race(running);
    const p = fn().finally(() => running.delete(p));
    running.add(p);
    next += gap;
    const wait = next - nowMs();
    if (wait > 0) await sleep(wait);
    else if (wait < -1000) next = nowMs(); // fell behind (slow machine): do not burst to catch up
  }
  await Promise.all(running);
}

async function timed(samples, fn) {
  const t0 = nowMs();
  const v = await fn();
  samples.add(nowMs() - t0);
  return v;
}

// Follows one event's bookmark until every region's version vector covers it.
async function trackReplication(reg, regions, bookmark, committedAt) {
  const m = /^(.+):(\d+)$/.exec(bookmark ?? '');
  if (!m) return;
  const [origin, seq] = [m[1], Number(m[2])];
  const pending = new Set(regions.filter((r) => r !== reg).map((r) => r.url));
  for (let guard = 0; guard < 400 && pending.size > 0; guard++) { // about 10 s at most
    await Promise.all([...pending].map(async (url) => {
      const s = await status(url).catch(() => null);
      if (s && (s.version_vector?.[origin] ?? 0) >= seq) pending.delete(url);
    }));
    if (pending.size > 0) await sleep(25);
  }
  if (pending.size === 0) reg.replication.add(nowMs() - committedAt);
}

async function runWorkload(regions, durationS, onTick) {
  const t0 = nowMs();
  const cpu0 = process.cpuUsage();
  const endAt = t0 + durationS * 1000;
  let totalOps = 0;
  const stop = () => nowMs() >= endAt || totalOps >= MAX_OPS;
  const count = (reg, isWrite) => { totalOps++; reg.ops++; if (isWrite) reg.writes++; };

  const tasks = [];
  for (const reg of regions) {
    const c = reg.client;
    const ownBase = (reg.index + 1) * 1_000_000;
    // Local mix: half reads, a quarter event inserts (raw, for the bookmark), a quarter own-row upserts.
    tasks.push(paced(LOCAL_OPS_PER_S, stop, async () => {
      const k = rnd(4);
      try {
        if (k === 0) {
          await timed(reg.reads, () => c.execute({ sql: 'SELECT owner, balance FROM accounts WHERE id = ?', args: [BigInt(1 + rnd(ACCOUNTS))] }));
          count(reg, false);
        } else if (k === 1) {
          await timed(reg.reads, () => c.execute({ sql: 'SELECT name, score, updated_by FROM profiles WHERE id = ?', args: [BigInt(1 + rnd(HOT_ROWS))] }));
          count(reg, false);
        } else if (k === 2) {
          const n = ++reg.events;
          const t = nowMs();
          const r = await pipeline(reg.url, 'INSERT INTO events (id, region, seq, kind, at_ms) VALUES (?, ?, ?, ?, ?)',
            [`${reg.id}-${n}`, reg.id, n, ['click', 'view', 'purchase'][n % 3], Date.now()]);
          reg.localWrites.add(nowMs() - t);
          count(reg, true);
          if (t >= reg.nextLagSampleAt && regions.length > 1) {
            reg.nextLagSampleAt = t + LAG_SAMPLE_EVERY_MS;
            reg.lagChecks.push(trackReplication(reg, regions, r.bookmark, t));
          }
        } else {
          await timed(reg.localWrites, () => c.execute({
            sql: 'INSERT INTO profiles (id, name, score, updated_by, updated_at) VALUES (?, ?, 1, ?, ?) ' +
              'ON CONFLICT(id) DO UPDATE SET score = score + 1, updated_by = excluded.updated_by, updated_at = excluded.updated_at',
            args: [BigInt(ownBase + rnd(200)), `${reg.id}-user`, reg.id, BigInt(Date.now())],
          }));
          count(reg, true);
        }
      } catch (e) {
        recordError(reg, ['read', 'read', 'event insert', 'profile upsert'][k], e);
      }
    }));
    // The same hot rows from every region at once: concurrent versions, resolved by last-writer-wins.
    tasks.push(paced(HOT_UPDATES_PER_S, stop, async () => {
      try {
        await timed(reg.localWrites, () => c.execute({
          sql: 'UPDATE profiles SET name = ?, score = score + 1, updated_by = ?, updated_at = ? WHERE id = ?',
          args: [`hot-by-${reg.id}`, reg.id, BigInt(Date.now()), BigInt(1 + rnd(HOT_ROWS))],
        }));
        count(reg, true);
      } catch (e) {
        recordError(reg, 'hot update', e);
      }
    }));
    // Strong transfers: one statement so the total balance is invariant whatever the interleaving. Each loop
    // has one transfer in flight; the pace only matters without WAN delays (--regions 1).
    for (let w = 0; w < STRONG_WORKERS; w++) {
      let n = 0;
      tasks.push(paced(STRONG_PER_S, stop, async () => {
        const from = 1 + rnd(ACCOUNTS);
        const to = 1 + ((from + rnd(ACCOUNTS - 1)) % ACCOUNTS);
        const amount = 1 + rnd(10);
        try {
          await timed(reg.strongWrites, () => c.execute({
            sql: 'UPDATE accounts SET balance = balance + CASE id WHEN ? THEN -? ELSE ? END WHERE id IN (?, ?)',
            args: [BigInt(from), BigInt(amount), BigInt(amount), BigInt(from), BigInt(to)],
          }));
          count(reg, true);
        } catch (e) {
          recordError(reg, 'strong transfer', e);
          return;
        }
        try {
          await timed(reg.localWrites, () => c.execute({
            sql: 'INSERT INTO audit_log (id, region, from_id, to_id, amount, at_ms) VALUES (?, ?, ?, ?, ?, ?)',
            args: [`${reg.id}-${w}-${++n}`, reg.id, BigInt(from), BigInt(to), BigInt(amount), BigInt(Date.now())],
          }));
          count(reg, true);
        } catch (e) {
          recordError(reg, 'audit insert', e);
        }
      }, 1));
    }
  }

  let ticking = true;
  const ticker = (async () => {
    for (let guard = 0; guard < 100000 && ticking; guard++) {
      await onTick((nowMs() - t0) / 1000);
      await sleep(500);
    }
  })();
  await Promise.all(tasks);
  ticking = false;
  await ticker;
  const cpu = process.cpuUsage(cpu0);
  const loadMs = nowMs() - t0;
  return { loadMs, totalOps, clientCpuPct: (100 * (cpu.user + cpu.system)) / 1000 / loadMs };
}

// Per region: writes/s since the previous tick (client-side counts), lag/pending from /v1/status, conflicts from /metrics.
function makeSampler(regions) {
  let prev = null;
  return async function sample() {
    const now = nowMs();
    const rows = await Promise.all(regions.map(async (reg) => {
      const [st, mt] = await Promise.all([status(reg.url).catch(() => null), metrics(reg.url).catch(() => null)]);
      const peers = st?.peers ?? [];
      const dt = prev ? (now - prev.at) / 1000 : 0;
      const wps = prev && dt > 0 ? (reg.writes - prev.writes.get(reg.id)) / dt : 0;
      return {
        id: reg.id,
        up: Boolean(st),
        role: st?.role ?? '?',
        wps,
        lagMs: Math.max(0, ...peers.map((p) => p.lag_ms ?? 0)),
        pending: peers.reduce((a, p) => a + (p.pending ?? 0), 0),
        conflicts: mt?.get('edgelite_repl_conflicts_total') ?? 0,
        vvSum: Object.values(st?.version_vector ?? {}).reduce((a, b) => a + b, 0),
      };
    }));
    prev = { at: now, writes: new Map(regions.map((r) => [r.id, r.writes])) };
    return rows;
  };
}

async function checksum(url, table) {
  const agg = await pipeline(url, `SELECT count(*), total(${TABLES[table].num}) FROM ${table}`);
  const all = await pipeline(url, `SELECT * FROM ${table} ORDER BY id`, [], 30000);
  const h = crypto.createHash('sha256');
  for (const row of all.rows) h.update(JSON.stringify(row.map((v) => [v.type, v.value ?? v.base64 ?? null]))).update('\n');
  return { count: plain(agg.rows[0][0]), total: plain(agg.rows[0][1]), hash: h.digest('hex').slice(0, 16) };
}

async function checksums(regions) {
  const out = {};
  for (const t of Object.keys(TABLES)) {
    out[t] = await Promise.all(regions.map((r) => checksum(r.url, t).catch((e) => ({ count: NaN, total: NaN, hash: `error: ${e.message}` }))));
  }
  return out;
}

const sameVv = (a, b) => {
  const ka = Object.keys(a).filter((k) => a[k] > 0).sort();
  const kb = Object.keys(b).filter((k) => b[k] > 0).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && a[k] === b[k]);
};

// From the end of the load: every region's version vector identical and covering what each origin
// wrote, then the table checksums equal everywhere.
async function converge(regions) {
  const t0 = nowMs();
  const own = await Promise.all(regions.map((r) => status(r.url).then((s) => s.version_vector?.[r.id] ?? 0).catch(() => 0)));
  let vvMs = NaN;
  let sums = null;
  for (let guard = 0; guard < 10000; guard++) {
    if (Number.isNaN(vvMs)) {
      const vvs = await Promise.all(regions.map((r) => status(r.url).then((s) => s.version_vector ?? {}).catch(() => null)));
      const ok = vvs.every((v) => v && sameVv(v, vvs[0])) && regions.every((r, i) => (vvs[0][r.id] ?? 0) >= own[i]);
      if (ok) vvMs = nowMs() - t0;
    }
    if (!Number.isNaN(vvMs)) {
      sums = await checksums(regions);
      const same = Object.values(sums).every((per) => per.every((s) => s.hash === per[0].hash && !s.hash.startsWith('error')));
      if (same) return { ok: true, vvMs, sumMs: nowMs() - t0, sums };
    }
    if (nowMs() - t0 > CONVERGE_TIMEOUT_MS) break;
    await sleep(50);
  }
  if (!sums) sums = await checksums(regions);
  return { ok: false, vvMs, sumMs: NaN, sums };
}

function latencyLine(label, s) {
  const x = s.summary();
  return `  ${label.padEnd(40)} p50 ${fmtMs(x.p50).padStart(7)}  p95 ${fmtMs(x.p95).padStart(7)}  p99 ${fmtMs(x.p99).padStart(7)} ms   (n=${x.n})`;
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const regions = o.regions.map(makeRegion);
  const primary = regions[0];
  let failed = false;

  let t = nowMs();
  const st = await waitReady(regions, 20000);
  step('regions connected to each other', t, st.map((s) => `${s.region}=${s.role}`).join(' '));
  if (st.some((s) => s.primary !== primary.id)) throw new Error(`the regions do not agree that ${primary.id} is primary`);

  t = nowMs();
  await createSchema(primary, regions);
  step(`schema + seed on ${primary.id}, visible everywhere`, t, Object.keys(TABLES).join(', '));

  say(`demo: workload for ${o.duration} s in ${regions.length} region(s): per region ${LOCAL_OPS_PER_S} local ops/s ` +
    `(reads, eventual writes), ${HOT_UPDATES_PER_S} hot-row updates/s, ${STRONG_WORKERS} strong transfer loops (<= ${STRONG_PER_S}/s each)`);
  const view = new LiveView();
  const sample = makeSampler(regions);
  let lastRows = [];
  const load = await runWorkload(regions, o.duration, async (elapsed) => {
    lastRows = await sample();
    const ops = regions.reduce((a, r) => a + r.ops, 0);
    view.update(elapsed, o.duration, lastRows, `ops=${ops}`);
  });
  step('workload', nowMs() - load.loadMs, `${load.totalOps} operations${load.totalOps >= MAX_OPS ? ' (op cap reached)' : ''}`);

  t = nowMs();
  const conv = await converge(regions);
  await Promise.all(regions.flatMap((r) => r.lagChecks));
  step('convergence check', t, conv.ok ? 'converged' : 'NOT converged');

  const finalMetrics = await Promise.all(regions.map((r) => metrics(r.url).catch(() => new Map())));
  const recorded = await Promise.all(regions.map((r) => conflictsRecorded(r.url).catch(() => NaN)));
  const detected = finalMetrics.map((m) => m.get('edgelite_repl_conflicts_total') ?? 0); // absent without peers

  const all = (f) => regions.reduce((acc, r) => acc.merge(r[f]), new Samples());
  say('');
  say('summary');
  say(latencyLine('local point read', all('reads')));
  say(latencyLine('local write (eventual/async tables)', all('localWrites')));
  for (const r of regions) say(latencyLine(`strong write from ${r.id}${r === primary ? ' (primary)' : ''}`, r.strongWrites));
  say(latencyLine('strong write, all regions', all('strongWrites')));
  if (regions.length > 1) say(latencyLine('event replicated to every region', all('replication')));
  say(`  ${'throughput'.padEnd(40)} ${(load.totalOps / (load.loadMs / 1000)).toFixed(0)} ops/s, ` +
    `${(regions.reduce((a, r) => a + r.writes, 0) / (load.loadMs / 1000)).toFixed(0)} writes/s over ${(load.loadMs / 1000).toFixed(1)} s; ` +
    `client process at ${load.clientCpuPct.toFixed(0)}% of a core`);
  say(`  ${'convergence after the load'.padEnd(40)} version vectors ${fmtMs(conv.vvMs)} ms, checksums ${conv.ok ? `${fmtMs(conv.sumMs)} ms` : 'never matched'}` +
    `${conv.ok ? '' : ` (gave up after ${CONVERGE_TIMEOUT_MS} ms)`}`);
  say(`  ${'conflicts detected / resolved'.padEnd(40)} ${detected.reduce((a, b) => a + b, 0)} / ${recorded.reduce((a, b) => a + b, 0)}` +
    `   (${regions.map((r, i) => `${r.id} ${detected[i]}/${recorded[i]}`).join(', ')})`);

  const errs = regions.flatMap((r) => [...r.errors].map(([k, v]) => `${r.id} ${k}: ${v.n} x (first: ${v.first})`));
  const nErr = regions.reduce((a, r) => a + [...r.errors.values()].reduce((b, v) => b + v.n, 0), 0);
  say(`  ${'client errors'.padEnd(40)} ${nErr}`);
  for (const e of errs.slice(0, 8)) say(`    ${e}`);

  say('');
  say(`identical data (count, total, sha256 of the ordered rows) in ${regions.map((r) => r.id).join(', ')}`);
  for (const [table, per] of Object.entries(conv.sums)) {
    const same = per.every((s) => s.hash === per[0].hash && !String(s.hash).startsWith('error'));
    if (same) {
      say(`  ${table.padEnd(10)} ${String(per[0].count).padStart(6)} rows  total ${String(per[0].total).padStart(9)}  ${per[0].hash}  OK`);
    } else {
      failed = true;
      say(`  ${table.padEnd(10)} FAIL: the regions differ`);
      per.forEach((s, i) => say(`    ${regions[i].id.padEnd(16)} ${String(s.count).padStart(6)} rows  total ${String(s.total).padStart(9)}  ${s.hash}`));
    }
  }
  const balance = conv.sums.accounts?.[0]?.total;
  if (balance === ACCOUNTS * START_BALANCE) say(`  ${'accounts'.padEnd(10)} total balance ${balance} = ${ACCOUNTS} x ${START_BALANCE}: no transfer lost or doubled  OK`);
  else {
    failed = true;
    say(`  accounts   FAIL: total balance ${balance}, expected ${ACCOUNTS * START_BALANCE}`);
  }
  if (load.totalOps === 0) {
    failed = true;
    say('  FAIL: no operation succeeded');
  }
  if (!(await crdtSection(regions, say))) failed = true;
  say(failed ? 'demo: FAIL' : `demo: OK: ${regions.length} region(s) hold identical data`);
  for (const r of regions) r.client.close();
  return failed ? 1 : 0;
}

process.on('SIGINT', () => {
  process.stdout.write('\ndemo: interrupted\n');
  process.exit(130);
});

main().then((code) => process.exit(code), (e) => {
  process.stdout.write(`\ndemo: FAIL: ${e.stack ?? e.message}\n`);
  process.exit(1);
});
