// SPDX-License-Identifier: MIT
// A three-region edgelite cluster on loopback for the replication tests (tests/client/repl_*.test.mjs).
//
// Every region is its own `edgelite serve --config FILE --region ID` process with a fresh data
// directory. Ports are reserved up front (bind port 0, read it, close) because every region's
// config must name every other region's address before anything starts.
//
// Each region gets its OWN copy of the config: the cluster name, secret and region ids are the same
// everywhere, only the `url`s differ. That is what lets a test place a chaos proxy on exactly one
// directed link: a region dials the `url` its own config gives for a peer, so
//   proxies: 'none'  every url is the peer's real address;
//   proxies: 'front' one proxy in front of each region, shared by all sources (cutting B's proxy
//                    cuts A->B and C->B, but not B->A);
//   proxies: 'pair'  one proxy per directed pair (source S's config points peer D at proxy S>D),
//                    so cutting A>B and B>A isolates exactly the A<->B link.
// Every process (nodes and proxies) is SIGKILLed at node exit as a last resort.

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { EDGE_BIN, sleep, waitExit } from './node.mjs';

// The binary and sleep are lib/node.mjs's; the tests import them from either file.
export { EDGE_BIN, sleep };

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '..', '..', '..');

export const CHAOS_BIN = process.env.EDGE_CHAOS_BIN
  ? path.resolve(process.env.EDGE_CHAOS_BIN)
  : path.resolve(repoRoot, 'build', 'chaosproxy');

const live = new Set();
process.on('exit', () => {
  for (const p of live) {
    try { p.kill('SIGKILL'); } catch { /* gone */ }
  }
});

function tryPort(port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(null));
    s.listen(port, '127.0.0.1', () => {
      const got = s.address().port;
      s.close(() => resolve(got));
    });
  });
}

/**
 * A port that was free a moment ago (bound on 127.0.0.1 and released). Taken below the kernel's
 * ephemeral range (ip_local_port_range, 32768 and up by default): between this check and the node's
 * bind, any outgoing connection of the tests running beside this one could take an ephemeral port
 * (a region then failed to start with "address already in use"); a random port below it only
 * collides with another test's random pick, which the bind check mostly catches.
 */
export async function freePort() {
  for (let i = 0; i < 50; i++) {
    const got = await tryPort(20000 + Math.floor(Math.random() * 12000));
    if (got !== null) return got;
  }
  const got = await tryPort(0);
  if (got === null) throw new Error('freePort: no port');
  return got;
}

function alive(proc) {
  return proc !== null && proc.exitCode === null && proc.signalCode === null;
}

// Spawn `bin args`, resolve with the regex match of the first stdout line matching `re`.
function spawnReady(bin, args, re, timeoutMs, label) {
  const proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(proc);
  const out = { stdout: '', stderr: '' };
  const cap = (s) => (s.length > 256 * 1024 ? s.slice(-128 * 1024) : s);
  proc.stdout.setEncoding('utf8');
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d) => { out.stderr = cap(out.stderr + d); });
  proc.on('exit', () => live.delete(proc));
  const ready = new Promise((resolve, reject) => {
    let done = false;
    const finish = (err, val) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) reject(err); else resolve(val);
    };
    const describe = (why) => new Error(`${label} did not become ready (${why})\n  cmd: ${bin} ${args.join(' ')}\n` +
      `  stdout: ${out.stdout.slice(-2000)}\n  stderr: ${out.stderr.slice(-4000)}`);
    const timer = setTimeout(() => {
      try { proc.kill('SIGKILL'); } catch { /* gone */ }
      finish(describe(`no ready line within ${timeoutMs} ms`));
    }, timeoutMs);
    proc.stdout.on('data', (d) => {
      out.stdout = cap(out.stdout + d);
      const m = re.exec(out.stdout);
      if (m) finish(null, m);
    });
    proc.once('error', (e) => finish(describe(`spawn failed: ${e.message}`)));
    proc.once('exit', (code, signal) => {
      setTimeout(() => finish(describe(`exited with code ${code} signal ${signal}`)), 50);
    });
  });
  return { proc, out, ready };
}

/** A chaos proxy (tests/lib/chaos/chaosproxy.c) from 127.0.0.1:<port> to 127.0.0.1:<upstreamPort>. */
export async function startProxy(upstreamPort) {
  const { proc, out, ready } = spawnReady(CHAOS_BIN,
    ['--listen', '127.0.0.1:0', '--upstream', `127.0.0.1:${upstreamPort}`, '--control', '127.0.0.1:0'],
    /chaosproxy: listening on (\d+) control on (\d+)/, 10000, 'chaosproxy');
  const m = await ready;
  const px = {
    port: Number(m[1]),
    controlPort: Number(m[2]),
    proc,
    out,
    async control(q) {
      const res = await fetch(`http://127.0.0.1:${px.controlPort}${q}`, { signal: AbortSignal.timeout(5000) });
      const text = await res.text();
      if (res.status !== 200) throw new Error(`chaosproxy ${q}: HTTP ${res.status} ${text}`);
      try { return JSON.parse(text); } catch { return text; }
    },
    cut() { return px.control('/set?cut=1'); },
    blackhole() { return px.control('/set?blackhole=1'); },
    latency(ms) { return px.control(`/set?latency_ms=${ms}`); },
    reset() { return px.control('/reset'); },
    status() { return px.control('/status'); },
    async stop() {
      if (alive(proc)) proc.kill('SIGKILL');
      await waitExit(proc, 5000);
    },
  };
  return px;
}

function yamlConfig({ name, secret, clusterKeys, regions, urlOf, consistency, syncIntervalMs, tables, replication,
  limits, sessions, capacity, router, realtime }) {
  const lines = [];
  const more = (o) => Object.entries(o ?? {}).map(([k, v]) => `, ${k}: ${JSON.stringify(v)}`).join('');
  lines.push(`cluster: { name: ${name}, secret: "${secret}"${more(clusterKeys)} }`);
  lines.push('regions:');
  for (const r of regions) {
    lines.push(`  - { id: ${r.id}, listen: "127.0.0.1:${r.port}", url: "${urlOf(r)}", data_dir: "${r.dataDir}",` +
      ` priority: ${r.priority}${capacity?.[r.id] ? `, capacity: ${JSON.stringify(capacity[r.id])}` : ''} }`);
  }
  const t = Object.entries(tables ?? {}).map(([k, v]) => `${k}: ${v}`).join(', ');
  lines.push(`replication: { consistency_level: ${consistency}, sync_interval_ms: ${syncIntervalMs},` +
    ` tables: ${t ? `{ ${t} }` : '~'}${more(replication)} }`);
  if (limits) lines.push(`limits: { ${more(limits).slice(2)} }`);
  if (sessions) lines.push(`sessions: { ${more(sessions).slice(2)} }`);
  if (router) lines.push(`router: ${router}`);
  if (realtime) lines.push(`realtime: { ${more(realtime).slice(2)} }`);
  return lines.join('\n') + '\n';
}

/**
 * Start a cluster. opts:
 *   regions: number of regions (default 3; ids 'a', 'b', 'c', ... with priorities 1, 2, 3: 'a' is primary)
 *   ids: region ids to use instead of 'a', 'b', ... (e.g. the ids of deployment/regions.json, so that
 *        `extraArgs: ['--emulate-wan', 'deployment/regions.json']` delays each link by its RTT);
 *        regions defaults to ids.length; the first id is the primary
 *   tables: { name: 'strong'|'eventual'|'async' } per-table levels
 *   replication: more replication.* keys ({ conflicts_keep: 3 }); limits: the limits section ({ writer_queue: 2 })
 *   router: the router section as YAML text ('{ bookmark_wait_ms: 200 }')
 *   realtime: the realtime section ({ queue_bytes: 4096 })
 *   proxies: false|'none' | true|'front' | 'pair' (see the file comment)
 *   consistency: default level (default 'eventual'); syncIntervalMs (default 200)
 *   extraArgs: more `serve` flags for every region (e.g. ['--bookmark-timeout-ms', '500'])
 *   regionArgs: { id: [flags] } more `serve` flags for one region (cluster.setArgs changes them for
 *              the next restart), e.g. { b: ['--clock-offset-ms', '3000'] }
 *   sessions: the sessions section ({ key_file: '/path', migrate_after: 3 })
 *   capacity: { id: { max_sessions: N, weight: W } } per-region capacity mappings
 *   peerUrl: async (src, dstRegion) => url | undefined: the URL region src uses for region dst
 *            (e.g. a recording proxy in front of dst); undefined keeps the default
 *   secret, name: cluster secret and name; cluster: more cluster.* keys ({ sig_replay_max: 8 })
 *   readyTimeoutMs: how long a region may take to print its listening line (default 15000; a region seeded
 *            from a large snapshot prints it only once the copy is in)
 * Returns the cluster object described below; always call `cluster.destroy()` in after().
 */
export async function startCluster(opts = {}) {
  const n = opts.regions ?? opts.ids?.length ?? 3;
  const proxyMode = opts.proxies === true ? 'front' : (opts.proxies || 'none');
  const name = opts.name ?? 'rtest';
  const secret = opts.secret ?? `s-${crypto.randomBytes(8).toString('hex')}`;
  const consistency = opts.consistency ?? 'eventual';
  const syncIntervalMs = opts.syncIntervalMs ?? 200;
  const extraArgs = opts.extraArgs ?? ['--log-level', 'warn'];
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'edgelite-cluster-'));
  const ids = opts.ids ? opts.ids.slice(0, n) : Array.from({ length: n }, (_, i) => String.fromCharCode(97 + i));
  if (ids.length !== n || new Set(ids).size !== n) throw new Error(`startCluster: need ${n} distinct ids`);

  const regions = {};
  for (let i = 0; i < n; i++) {
    const id = ids[i];
    const dataDir = path.join(root, id);
    fs.mkdirSync(dataDir, { recursive: true });
    regions[id] = { id, port: await freePort(), dataDir, priority: i + 1, proc: null, out: null, config: null,
      args: (opts.regionArgs ?? {})[id] ?? [] };
  }

  const cluster = {
    ids,
    regions,
    proxies: {}, // 'front': proxies[dst]; 'pair': proxies[`${src}>${dst}`]
    secret,
    name,
    root,
    primary: ids[0],
    unexpectedExits: [], // { id, code, signal } of regions that died without being told to

    url(id) { return `http://127.0.0.1:${regions[id].port}`; },
    stderr(id) { return regions[id].out ? regions[id].out.stderr : ''; },

    async _launch(id) {
      const r = regions[id];
      const { proc, out, ready } = spawnReady(EDGE_BIN,
        ['serve', '--config', r.config, '--region', id, ...extraArgs, ...r.args],
        /edgelite: listening on http:\/\/[^\s:]+:(\d+)/, opts.readyTimeoutMs ?? 15000, `edgelite region ${id}`);
      r.proc = proc;
      r.out = out;
      r.expectExit = false;
      // A region dying on its own is a server bug: say so loudly, with its last words.
      proc.once('exit', (code, signal) => {
        if (r.expectExit) return;
        cluster.unexpectedExits.push({ id, code, signal });
        setTimeout(() => {
          console.error(`# region ${id} exited unexpectedly (code ${code}, signal ${signal}); stderr tail:\n` +
            out.stderr.slice(-3000).replace(/^/gm, '#   '));
        }, 50);
      });
      await ready;
    },

    /** SIGTERM and wait (SIGKILL after timeoutMs). */
    async stop(id, timeoutMs = 10000) {
      const p = regions[id].proc;
      if (!p) return null;
      regions[id].expectExit = true;
      if (alive(p)) p.kill('SIGTERM');
      const r = await waitExit(p, timeoutMs);
      if (r.timedOut) {
        p.kill('SIGKILL');
        await waitExit(p, 5000);
      }
      return r;
    },

    /** Send `signal` (default SIGKILL) and wait for the exit. */
    async kill(id, signal = 'SIGKILL') {
      const p = regions[id].proc;
      regions[id].expectExit = true;
      if (p && alive(p)) {
        if (p.signalCode === null) p.kill('SIGCONT'); // a stopped process never handles SIGTERM
        p.kill(signal);
      }
      const r = p ? await waitExit(p, 10000) : null;
      if (r && r.timedOut) {
        p.kill('SIGKILL');
        await waitExit(p, 5000);
      }
      return r;
    },

    /** Start the region again on the same data directory, port and config. */
    async restart(id) {
      const p = regions[id].proc;
      if (p && alive(p)) await cluster.stop(id);
      // The port was just released; a quick retry covers a slow socket teardown.
      for (let attempt = 0; ; attempt++) {
        try {
          await cluster._launch(id);
          return;
        } catch (e) {
          if (attempt >= 4) throw e;
          await sleep(300);
        }
      }
    },

    /** The region's own extra `serve` flags from its next (re)start on. */
    setArgs(id, args) { regions[id].args = args; },

    /**
     * For a failure message: whether region id still answers /health (3 s at most), each of its
     * threads' name, state and kernel wait channel (a loop stuck in a lock shows here), and
     * what every other region's /v1/status says about it (link, needs_snapshot, log floors).
     */
    async diagnose(id) {
      const out = [];
      try {
        const h = await fetch(`${cluster.url(id)}/health`, { signal: AbortSignal.timeout(3000) });
        out.push(`${id} /health: ${h.status} ${(await h.text()).slice(0, 200)}`);
      } catch (e) {
        out.push(`${id} /health: ${e.name} ${e.message}`);
      }
      const pid = regions[id].proc?.pid;
      try {
        for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
          const rd = (f) => { try { return fs.readFileSync(`/proc/${pid}/task/${tid}/${f}`, 'utf8').trim(); } catch { return '?'; } };
          const st = rd('stat');
          out.push(`  thread ${tid} ${rd('comm')} state ${st.slice(st.lastIndexOf(')') + 2, st.lastIndexOf(')') + 3)} wchan ${rd('wchan')}`);
        }
      } catch (e) {
        out.push(`  threads: ${e.message}`);
      }
      for (const o of ids) {
        if (o === id) continue;
        try {
          const st = await cluster.status(o);
          const p = st.peers.find((x) => x.region === id);
          out.push(`${o}: link to ${id} connected=${p?.connected} needs_snapshot=${p?.needs_snapshot} ` +
            `last_error=${JSON.stringify(p?.last_error)} log_floor=${JSON.stringify(st.log_floor)} ` +
            `vv=${JSON.stringify(st.version_vector)}`);
        } catch (e) {
          out.push(`${o}: status: ${e.message}`);
        }
      }
      return out.join('\n');
    },

    pause(id) { regions[id].proc.kill('SIGSTOP'); },
    resume(id) { regions[id].proc.kill('SIGCONT'); },

    /** A @libsql/client for a region (caller closes it); `config` adds client options (intMode, fetch, ...). */
    async client(id, config = {}) {
      const { createClient } = await import('@libsql/client');
      return createClient({ url: cluster.url(id), ...config });
    },

    /**
     * One statement through raw fetch to /v2/pipeline. Returns { status, bookmark, headers, json, ok,
     * rows (arrays of JS values), affected, error: {message, code} | null }. Never throws on HTTP errors.
     */
    async sql(id, sqlText, args = [], headers = {}, timeoutMs = 15000) {
      return sqlAt(cluster.url(id), sqlText, args, headers, timeoutMs);
    },

    /** The rows of a query in a region as arrays of JS values; throws when it fails. */
    async rows(id, sqlText, args = []) {
      const r = await cluster.sql(id, sqlText, args);
      if (!r.ok) throw new Error(`region ${id}: ${sqlText}: HTTP ${r.status} ${JSON.stringify(r.error)}`);
      return r.rows;
    },

    /** { count, text, hash } of table `t` (columns id, v) in a region. */
    async checksum(id, table) {
      const rows = await cluster.rows(id,
        `SELECT count(*), coalesce(group_concat(id || ':' || coalesce(v, '~'), ','), '') FROM ` +
        `(SELECT id, v FROM ${table} ORDER BY id)`);
      const text = String(rows[0][1]);
      return { count: Number(rows[0][0]), text, hash: crypto.createHash('sha256').update(text).digest('hex') };
    },

    async status(id) { return getJson(cluster.url(id), '/v1/status'); },
    /** GET /v1/conflicts; hlc values stay exact (strings): they exceed 2^53. */
    async conflicts(id) { return getJson(cluster.url(id), '/v1/conflicts', true); },
    async metrics(id) {
      const res = await fetch(cluster.url(id) + '/metrics', { signal: AbortSignal.timeout(10000) });
      return res.text();
    },
    /** Value of an unlabelled (or exactly labelled) metric, NaN when missing. */
    async metric(id, nameWithLabels) {
      const text = await cluster.metrics(id);
      for (const line of text.split('\n')) {
        if (line.startsWith(nameWithLabels + ' ')) return Number(line.slice(nameWithLabels.length + 1));
      }
      return NaN;
    },

    /** True when a table exists in a region. */
    async hasTable(id, table) {
      const r = await cluster.sql(id, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
        [table]);
      return r.ok && Number(r.rows[0][0]) === 1;
    },

    /** Run DDL in one region and wait until every live region has the table. */
    async createTable(table, ddl, { on = ids[0], timeoutMs = 10000, regionsList = ids } = {}) {
      const r = await cluster.sql(on, ddl);
      if (!r.ok) throw new Error(`${ddl}: HTTP ${r.status} ${JSON.stringify(r.error)}`);
      const deadline = Date.now() + timeoutMs;
      for (const id of regionsList) {
        while (!(await cluster.hasTable(id, table))) {
          if (Date.now() > deadline) throw new Error(`table ${table} did not reach region ${id}`);
          await sleep(50);
        }
      }
    },

    /**
     * Poll until every region in `regionsList` has the same checksum of every table, up to timeoutMs.
     * Returns { ok, sums: { table: { region: checksum } }, elapsedMs }.
     */
    async waitConverged(tables, timeoutMs = 10000, regionsList = ids) {
      const start = Date.now();
      let sums = {};
      for (let guard = 0; guard < 100000; guard++) {
        sums = {};
        let same = true;
        for (const t of tables) {
          sums[t] = {};
          for (const id of regionsList) {
            try {
              sums[t][id] = await cluster.checksum(id, t);
            } catch (e) {
              sums[t][id] = { hash: `error: ${e.message}` };
            }
          }
          const hashes = new Set(Object.values(sums[t]).map((s) => s.hash));
          if (hashes.size !== 1) same = false;
        }
        if (same) return { ok: true, sums, elapsedMs: Date.now() - start };
        if (Date.now() - start > timeoutMs) break;
        await sleep(100);
      }
      return { ok: false, sums, elapsedMs: Date.now() - start };
    },

    /** Poll `fn` (async, returns truthy when done) every `everyMs` up to timeoutMs; returns the last value. */
    async waitFor(fn, timeoutMs = 10000, everyMs = 100) {
      const deadline = Date.now() + timeoutMs;
      let v;
      for (let guard = 0; guard < 100000; guard++) {
        try { v = await fn(); } catch (e) { v = undefined; }
        if (v) return v;
        if (Date.now() > deadline) return v;
        await sleep(everyMs);
      }
      return v;
    },

    /** Wait until every region has its links to all the others up (20 s at most); true if they came up. */
    async waitLinked(timeoutMs = 20000) {
      return cluster.waitFor(async () => {
        for (const id of ids) {
          const peers = (await cluster.status(id))?.peers ?? [];
          if (peers.length !== ids.length - 1 || !peers.every((p) => p.connected === true)) return undefined;
        }
        return true;
      }, timeoutMs, 50);
    },

    /**
     * With proxies 'front': cut the proxies in front of the regions of list and wait (30 s at most)
     * until none of them has a link up to another of them; true if they came apart.
     */
    async cutApart(list, timeoutMs = 30000) {
      for (const id of list) await cluster.proxies[id].cut();
      return cluster.waitFor(async () => {
        for (const id of list) {
          const st = await cluster.status(id);
          if (st.peers.some((p) => p.region !== id && list.includes(p.region) && p.connected)) return false;
        }
        return true;
      }, timeoutMs);
    },

    /**
     * With proxies: cut every proxy, wait (10 s at most, asserting it) until no region has a link up,
     * run fn, then reset every proxy, also when fn throws.
     */
    async partitioned(fn) {
      const links = Object.keys(cluster.proxies);
      for (const l of links) await cluster.proxies[l].cut();
      try {
        const down = await cluster.waitFor(async () => {
          for (const id of ids) if ((await cluster.status(id)).peers.some((p) => p.connected)) return false;
          return true;
        }, 10000);
        if (!down) throw new Error('links still up after cutting every proxy');
        return await fn();
      } finally {
        for (const l of links) await cluster.proxies[l].reset();
      }
    },

    /** Kill every region and proxy and remove the data directories. */
    async destroy() {
      for (const id of ids) {
        const p = regions[id].proc;
        regions[id].expectExit = true;
        if (p && alive(p)) {
          try { p.kill('SIGCONT'); } catch { /* gone */ }
          p.kill('SIGKILL');
          await waitExit(p, 5000);
        }
      }
      for (const px of Object.values(cluster.proxies)) await px.stop();
      fs.rmSync(root, { recursive: true, force: true });
    },
  };

  try {
    // Proxies first: the configs need their addresses.
    if (proxyMode === 'front') {
      for (const id of ids) cluster.proxies[id] = await startProxy(regions[id].port);
    } else if (proxyMode === 'pair') {
      for (const src of ids) {
        for (const dst of ids) {
          if (src !== dst) cluster.proxies[`${src}>${dst}`] = await startProxy(regions[dst].port);
        }
      }
    }
    const list = ids.map((id) => regions[id]);
    for (const src of ids) {
      const custom = {};
      if (opts.peerUrl) {
        for (const r of list) if (r.id !== src) custom[r.id] = await opts.peerUrl(src, r);
      }
      const urlOf = (r) => {
        if (custom[r.id]) return custom[r.id];
        if (r.id === src || proxyMode === 'none') return `http://127.0.0.1:${r.port}`;
        const px = proxyMode === 'front' ? cluster.proxies[r.id] : cluster.proxies[`${src}>${r.id}`];
        return `http://127.0.0.1:${px.port}`;
      };
      const file = path.join(root, `config-${src}.yaml`);
      fs.writeFileSync(file, yamlConfig({ name, secret, clusterKeys: opts.cluster, regions: list, urlOf, consistency,
        syncIntervalMs, tables: opts.tables, replication: opts.replication, limits: opts.limits,
        sessions: opts.sessions, capacity: opts.capacity, router: opts.router, realtime: opts.realtime }));
      regions[src].config = file;
    }
    await Promise.all(ids.map((id) => cluster._launch(id)));
  } catch (e) {
    await cluster.destroy();
    throw e;
  }
  return cluster;
}

async function getJson(base, p, exactHlc = false) {
  const res = await fetch(base + p, { signal: AbortSignal.timeout(10000) });
  let text = await res.text();
  if (res.status !== 200) throw new Error(`GET ${p}: HTTP ${res.status} ${text}`);
  if (exactHlc) text = text.replace(/"hlc":(\d+)/g, '"hlc":"$1"');
  return JSON.parse(text);
}

function toHranaValue(v) {
  if (v === null || v === undefined) return { type: 'null' };
  if (typeof v === 'bigint') return { type: 'integer', value: v.toString() };
  if (typeof v === 'number') {
    return Number.isInteger(v) ? { type: 'integer', value: String(v) } : { type: 'float', value: v };
  }
  if (Buffer.isBuffer(v)) return { type: 'blob', base64: v.toString('base64') };
  return { type: 'text', value: String(v) };
}

function fromHranaValue(v) {
  switch (v.type) {
    case 'null': return null;
    case 'integer': return Number(v.value);
    case 'float': return v.value;
    case 'text': return v.value;
    case 'blob': return Buffer.from(v.base64, 'base64');
    default: return v;
  }
}

/** One statement against an arbitrary node URL (see cluster.sql). */
export async function sqlAt(base, sqlText, args = [], headers = {}, timeoutMs = 15000) {
  const body = {
    requests: [
      { type: 'execute', stmt: { sql: sqlText, args: args.map(toHranaValue), want_rows: true } },
      { type: 'close' },
    ],
  };
  let res;
  try {
    res = await fetch(base + '/v2/pipeline', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (e) {
    return { status: 0, ok: false, bookmark: null, headers: null, json: undefined, rows: [], affected: 0,
      error: { message: e.message, code: 'FETCH_FAILED' } };
  }
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  const out = { status: res.status, ok: false, bookmark: res.headers.get('x-edge-bookmark'), headers: res.headers,
    json, text, rows: [], affected: 0, error: null };
  if (res.status !== 200) {
    out.error = { message: json?.message ?? json?.error ?? text, code: json?.code ?? null };
    return out;
  }
  const r0 = json?.results?.[0];
  if (r0?.type === 'ok') {
    const result = r0.response.result;
    out.ok = true;
    out.rows = (result.rows ?? []).map((row) => row.map(fromHranaValue));
    out.affected = result.affected_row_count ?? 0;
  } else {
    out.error = { message: r0?.error?.message ?? text, code: r0?.error?.code ?? null };
  }
  return out;
}
