// SPDX-License-Identifier: MIT
// bench/repl_probe.mjs: the cluster-side helpers of bench/repl.sh (Node 18+, no dependencies).
//
//   node bench/repl_probe.mjs gen      --dir D --regions N [--keys K] [--bodies B]
//   node bench/repl_probe.mjs ready    --urls U1,U2,U3 [--timeout-ms T]
//   node bench/repl_probe.mjs create   --urls U1,U2,U3 [--timeout-ms T]
//   node bench/repl_probe.mjs converge --urls U1,U2,U3 --name NAME [--timeout-ms T]
//   node bench/repl_probe.mjs vvwait   --urls U1,U2[,U3] --name NAME [--timeout-ms T]
//   node bench/repl_probe.mjs probe    --urls U1,U2,U3 --ids A,B,C --catalogue regions.json [--writes N] [--concurrency C]
//
// Each command prints machine lines starting with "RESULT " on stdout (progress goes to stderr) and
// exits 1 when its check fails (no convergence, a read that did not see its write, ...), so the shell
// script can fail loudly. Every wait is bounded by --timeout-ms.
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';

function parseArgs(argv) {
  const o = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || argv[i + 1] === undefined) throw new Error(`bad argument '${argv[i]}'`);
    o[argv[i].slice(2)] = argv[i + 1];
  }
  return o;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const now = () => Number(process.hrtime.bigint()) / 1e6;
const log = (s) => process.stderr.write(`   ${s}\n`);

const int = (v) => ({ type: 'integer', value: String(v) });
const text = (v) => ({ type: 'text', value: String(v) });
const exec = (sql, args) => ({ type: 'execute', stmt: args ? { sql, args } : { sql } });
const body = (...reqs) => JSON.stringify({ requests: [...reqs, { type: 'close' }] });

/** POST one pipeline; never throws on HTTP errors: {status, json, headers, ms}. */
async function pipeline(url, bodyText, headers = {}) {
  const t0 = now();
  const res = await fetch(`${url}/v2/pipeline`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: bodyText,
  });
  const raw = await res.text();
  let json = null;
  try { json = JSON.parse(raw); } catch { /* reported below through status/json */ }
  return { status: res.status, json, raw, headers: res.headers, ms: now() - t0 };
}

/** First Hrana error in a pipeline response, or null. */
function hranaError(r) {
  if (r.status !== 200 || !r.json) return `HTTP ${r.status}: ${r.raw.slice(0, 200)}`;
  for (const x of r.json.results || []) {
    if (x.type === 'error') return x.error?.message || 'error';
  }
  return null;
}

function rowsOf(r) {
  return r.json.results[0].response.result.rows.map((row) => row.map((c) => (c && typeof c === 'object' ? c.value : c)));
}

async function query(url, sql, args) {
  const r = await pipeline(url, body(exec(sql, args)));
  const e = hranaError(r);
  if (e) throw new Error(`${url}: ${sql}: ${e}`);
  return rowsOf(r);
}

async function status(url) {
  const res = await fetch(`${url}/v1/status`);
  if (res.status !== 200) throw new Error(`${url}/v1/status: HTTP ${res.status}`);
  return res.json();
}

function pct(sorted, p) {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

// ---------------------------------------------------------------------------------------------
// gen: request bodies for loadgen, one per line. Upserts over a key space shared by all regions
// (so concurrent writes to one key really conflict and LWW must pick the same winner everywhere);
// values carry region and sequence so a wrong winner changes the checksum.
function gen(o) {
  const dir = o.dir;
  const regions = Number(o.regions || 3);
  const keys = Number(o.keys || 200000);
  const bodies = Number(o.bodies || 20000);
  // mulberry32: 32-bit integer arithmetic only (a plain LCG in doubles loses its low bits).
  let seed = 20240601;
  const rnd = () => {
    seed = (seed + 0x6d2b79f5) >>> 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
  const key = () => 1 + (rnd() % keys);
  const upsert = 'INSERT INTO kv(id, v) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET v = excluded.v';
  for (let r = 0; r < regions; r++) {
    const single = [];
    const multi10 = [];
    const multi100 = [];
    const reads = [];
    for (let i = 0; i < bodies; i++) {
      single.push(body(exec(upsert, [int(key()), text(`r${r}-s${i}`)])));
      reads.push(body(exec('SELECT v FROM kv WHERE id = ?', [int(key())])));
    }
    for (const [n, out, count] of [[10, multi10, bodies / 4], [100, multi100, bodies / 20]]) {
      for (let i = 0; i < count; i++) {
        // One multi-row statement: one transaction, one replication log entry of n rows.
        const tuples = [];
        const args = [];
        for (let j = 0; j < n; j++) {
          tuples.push('(?, ?)');
          args.push(int(key()), text(`r${r}-m${n}-${i}-${j}`));
        }
        out.push(body(exec(`INSERT INTO kv(id, v) VALUES ${tuples.join(', ')} ON CONFLICT(id) DO UPDATE SET v = excluded.v`, args)));
      }
    }
    fs.writeFileSync(path.join(dir, `single.${r}.jsonl`), single.join('\n') + '\n');
    fs.writeFileSync(path.join(dir, `multi10.${r}.jsonl`), multi10.join('\n') + '\n');
    fs.writeFileSync(path.join(dir, `multi100.${r}.jsonl`), multi100.join('\n') + '\n');
    fs.writeFileSync(path.join(dir, `reads.${r}.jsonl`), reads.join('\n') + '\n');
  }
}

// ---------------------------------------------------------------------------------------------
// ready: every region answers /v1/status and reports every peer connected.
async function ready(urls, timeoutMs) {
  const end = now() + timeoutMs;
  let last = '';
  while (now() < end) {
    try {
      const all = await Promise.all(urls.map(status));
      if (all.every((s) => s.peers.length === urls.length - 1 && s.peers.every((p) => p.connected))) return;
      last = JSON.stringify(all.map((s) => s.peers.map((p) => [p.region, p.connected])));
    } catch (e) {
      last = String(e.message);
    }
    await sleep(50);
  }
  throw new Error(`cluster not ready after ${timeoutMs} ms: ${last}`);
}

// create: the two tables in region 1, then wait until every region has them.
async function create(urls, timeoutMs) {
  await query(urls[0], 'CREATE TABLE IF NOT EXISTS kv(id INTEGER PRIMARY KEY, v TEXT)');
  await query(urls[0], 'CREATE TABLE IF NOT EXISTS probe(id INTEGER PRIMARY KEY, origin TEXT, t_ms REAL)');
  const end = now() + timeoutMs;
  while (now() < end) {
    const have = await Promise.all(urls.map((u) =>
      query(u, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name IN ('kv', 'probe')")));
    if (have.every((r) => Number(r[0][0]) === 2)) return;
    await sleep(50);
  }
  throw new Error(`tables did not reach every region within ${timeoutMs} ms`);
}

// ---------------------------------------------------------------------------------------------
// converge: time until the version vectors are equal with nothing pending, then until the
// table contents (SHA-256 of every row in key order) are equal.
const vvKey = (vv) => JSON.stringify(Object.keys(vv).sort().map((k) => [k, vv[k]]));

async function tableHash(url) {
  const h = crypto.createHash('sha256');
  let after = -1;
  let rows = 0;
  for (let page = 0; page < 10000; page++) {
    const r = await query(url, 'SELECT id, v FROM kv WHERE id > ? ORDER BY id LIMIT 20000', [int(after)]);
    for (const [id, v] of r) h.update(`${id}:${v}\n`);
    rows += r.length;
    if (r.length < 20000) break;
    after = r[r.length - 1][0];
  }
  return { rows, sha: h.digest('hex') };
}

async function converge(urls, name, timeoutMs) {
  const t0 = now();
  const end = t0 + timeoutMs;
  let vvMs = null;
  let last = '';
  while (now() < end && vvMs === null) {
    const all = await Promise.all(urls.map(status));
    const keys = all.map((s) => vvKey(s.version_vector));
    const pending = all.reduce((a, s) => a + s.peers.reduce((b, p) => b + Number(p.pending), 0), 0);
    if (keys.every((k) => k === keys[0]) && pending === 0) vvMs = now() - t0;
    else {
      last = `vv=${keys.join(' | ')} pending=${pending}`;
      await sleep(20);
    }
  }
  if (vvMs === null) {
    console.log(`RESULT name=${name} converged=0 vv_ms=-1 data_ms=-1`);
    throw new Error(`${name}: version vectors did not converge within ${timeoutMs} ms: ${last}`);
  }
  let dataMs = null;
  let sums = [];
  while (now() < end && dataMs === null) {
    sums = await Promise.all(urls.map(tableHash));
    if (sums.every((s) => s.sha === sums[0].sha && s.rows === sums[0].rows)) dataMs = now() - t0;
    else await sleep(50);
  }
  const vv = (await status(urls[0])).version_vector;
  const entries = Object.values(vv).reduce((a, b) => a + Number(b), 0);
  if (dataMs === null) {
    console.log(`RESULT name=${name} converged=0 vv_ms=${vvMs.toFixed(0)} data_ms=-1`);
    throw new Error(`${name}: equal version vectors but table contents differ after ${timeoutMs} ms: ` +
      sums.map((s) => `${s.rows} rows ${s.sha.slice(0, 12)}`).join(' | '));
  }
  // data_ms includes hashing every row of all regions once (about 0.1-0.5 s per 100k rows).
  console.log(`RESULT name=${name} converged=1 vv_ms=${vvMs.toFixed(0)} data_ms=${dataMs.toFixed(0)} ` +
    `rows=${sums[0].rows} log_entries=${entries} sha=${sums[0].sha.slice(0, 16)}`);
}

// ---------------------------------------------------------------------------------------------
// vvwait: time until the given regions' version vectors are equal (nothing else: no pending check,
// so a region outside --urls may be stopped; no table hashing, so it adds next to no node CPU).
async function vvwait(urls, name, timeoutMs) {
  const t0 = now();
  const end = t0 + timeoutMs;
  let last = '';
  while (now() < end) {
    const keys = (await Promise.all(urls.map(status))).map((s) => vvKey(s.version_vector));
    if (keys.every((k) => k === keys[0])) {
      console.log(`RESULT name=${name} vv_ms=${(now() - t0).toFixed(0)}`);
      return;
    }
    last = keys.join(' | ');
    await sleep(10);
  }
  throw new Error(`${name}: version vectors not equal within ${timeoutMs} ms: ${last}`);
}

// ---------------------------------------------------------------------------------------------
// probe: commit-to-applied per directed region pair. A write in A returns its bookmark A:seq;
// right after the acknowledgement, a read carrying that bookmark goes to B and to C. The node
// parks such a read until it has applied A:seq. The commit happens somewhere between sending the
// write and its acknowledgement, so (read answered) - (write sent) is an upper bound of commit to
// applied in B (reported as p50/p95/p99/min/max) and (read answered) - (write acknowledged) a lower
// bound (ack_p50_ms); both include one loopback read (~0.1-1 ms). The read selects the probe row,
// so a read that answers without the row fails the run.
async function probe(o) {
  const urls = o.urls.split(',');
  const ids = o.ids.split(',');
  const cat = JSON.parse(fs.readFileSync(o.catalogue, 'utf8'));
  const rtt = (a, b) => cat.latency_ms?.[a]?.[b] ?? cat.latency_ms?.[b]?.[a] ?? 0;
  const writes = Number(o.writes || 60);
  const conc = Number(o.concurrency || 3);
  const samples = new Map(); // "A>B" -> [ms] from sending the write to the read's answer
  const fromAck = new Map(); // "A>B" -> [ms] from the write's acknowledgement to the read's answer
  const writeMs = new Map(); // A -> [ms], the eventual write's own acknowledgement time
  let failures = 0;
  let firstFailure = '';
  let nextId = 1;
  const stamp = Date.now() % 1e6;

  async function one(ai) {
    const id = stamp * 10000 + nextId++;
    const tSend = now();
    const w = await pipeline(urls[ai], body(exec('INSERT INTO probe(id, origin, t_ms) VALUES (?, ?, ?)',
      [int(id), text(ids[ai]), { type: 'float', value: Date.now() }])));
    const tAck = now();
    const bm = w.headers.get('x-edge-bookmark');
    const err = hranaError(w);
    if (err || !bm) {
      failures++;
      firstFailure ||= `write in ${ids[ai]}: ${err || 'no X-Edge-Bookmark header'}`;
      return;
    }
    (writeMs.get(ids[ai]) || writeMs.set(ids[ai], []).get(ids[ai])).push(w.ms);
    await Promise.all(urls.map(async (u, bi) => {
      if (bi === ai) return;
      const r = await pipeline(u, body(exec('SELECT origin FROM probe WHERE id = ?', [int(id)])),
        { 'X-Edge-Bookmark': bm });
      const tDone = now();
      const e = hranaError(r);
      const rows = e ? [] : rowsOf(r);
      if (e || rows.length !== 1 || rows[0][0] !== ids[ai]) {
        failures++;
        firstFailure ||= `bookmark read ${bm} in ${ids[bi]}: ${e || `got ${JSON.stringify(rows)}`}`;
        return;
      }
      const k = `${ids[ai]}>${ids[bi]}`;
      (samples.get(k) || samples.set(k, []).get(k)).push(tDone - tSend);
      (fromAck.get(k) || fromAck.set(k, []).get(k)).push(tDone - tAck);
    }));
  }

  // Origins interleaved, a few probes in flight per origin, so the samples spread over the run.
  await Promise.all(urls.map(async (_, ai) => {
    for (let round = 0; round < Math.ceil(writes / conc); round++) {
      await Promise.all(Array.from({ length: conc }, () => one(ai)));
      await sleep(5 + (round * 7) % 23);
    }
  }));

  const all = [];
  for (const [k, v] of [...samples.entries()].sort()) {
    v.sort((a, b) => a - b);
    all.push(...v);
    const [a, b] = k.split('>');
    const va = fromAck.get(k).sort((x, y) => x - y);
    console.log(`RESULT name=applied pair=${k} n=${v.length} ack_p50_ms=${pct(va, 50).toFixed(1)} p50_ms=${pct(v, 50).toFixed(1)} ` +
      `p95_ms=${pct(v, 95).toFixed(1)} p99_ms=${pct(v, 99).toFixed(1)} min_ms=${v[0].toFixed(1)} max_ms=${v[v.length - 1].toFixed(1)} ` +
      `floor_ms=${(rtt(a, b) / 2).toFixed(1)}`);
  }
  all.sort((a, b) => a - b);
  console.log(`RESULT name=applied pair=all n=${all.length} p50_ms=${pct(all, 50).toFixed(1)} ` +
    `p95_ms=${pct(all, 95).toFixed(1)} p99_ms=${pct(all, 99).toFixed(1)} max_ms=${(all[all.length - 1] ?? NaN).toFixed(1)} failures=${failures}`);
  for (const [k, v] of [...writeMs.entries()].sort()) {
    v.sort((a, b) => a - b);
    console.log(`RESULT name=probe_write region=${k} n=${v.length} p50_ms=${pct(v, 50).toFixed(2)} p99_ms=${pct(v, 99).toFixed(2)}`);
  }
  if (failures) throw new Error(`${failures} probe failure(s); first: ${firstFailure}`);
}

async function main() {
  const [cmd, ...rest] = process.argv.slice(2);
  const o = parseArgs(rest);
  const urls = o.urls ? o.urls.split(',') : [];
  const timeoutMs = Number(o['timeout-ms'] || 30000);
  if (cmd === 'gen') gen(o);
  else if (cmd === 'ready') await ready(urls, timeoutMs);
  else if (cmd === 'create') await create(urls, timeoutMs);
  else if (cmd === 'converge') await converge(urls, o.name || 'converge', timeoutMs);
  else if (cmd === 'vvwait') await vvwait(urls, o.name || 'vvwait', timeoutMs);
  else if (cmd === 'probe') await probe(o);
  else throw new Error(`unknown command '${cmd}' (gen, ready, create, converge, vvwait, probe)`);
}

main().catch((e) => {
  process.stderr.write(`repl_probe: ${e.message}\n`);
  process.exit(1);
});
