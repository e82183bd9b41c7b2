// SPDX-License-Identifier: MIT
// The front door's CPU per relayed WebSocket execute, in instructions (the machine's wall clock
// is too noisy to compare builds): a 1-region cluster, `edgelite router` run under
// `valgrind --tool=callgrind`, N point reads through it over WebSocket (@libsql/client, CONC
// in flight), then the door is stopped (SIGTERM) and callgrind writes its profile.
// Usage (tests/client as cwd): EDGE_BIN=build/edgelite COST_N=5000 COST_OUT=/tmp/cg.out node ../../bench/router_ws_cost.mjs
// Run it at two N and divide the difference of the totals by the difference of N: the door's
// start and stop cancel out.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { startCluster } from '../tests/client/lib/cluster.mjs';

const N = Number(process.env.COST_N ?? 5000);
const CONC = Number(process.env.COST_CONC ?? 16);
const OUT = process.env.COST_OUT ?? '/tmp/router_ws_cost.callgrind';
const bin = process.env.EDGE_BIN;

const c = await startCluster({ regions: 1, extraArgs: ['--log-level', 'error'] });
let proc = null;
try {
  await c.createTable('kv', 'CREATE TABLE IF NOT EXISTS kv (id INTEGER PRIMARY KEY, v TEXT)');
  const res = await fetch(c.url('a') + '/v2/pipeline', { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ requests: [{ type: 'execute', stmt: { sql: "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL " +
      "SELECT i + 1 FROM s WHERE i < 1000) INSERT INTO kv (id, v) SELECT i, 'value-' || i FROM s" } }, { type: 'close' }] }) });
  if (res.status !== 200) throw new Error(await res.text());
  const cfg = path.join(c.root, 'router.yaml');
  // probes rare: their count would grow with the run's length under valgrind
  fs.writeFileSync(cfg, [`cluster: { name: ${c.name}, secret: "${c.secret}" }`, 'regions:',
    ...c.ids.map((id) => `  - { id: ${id}, url: "${c.url(id)}", priority: ${c.regions[id].priority} }`),
    'router: { probe_interval_ms: 600000, request_timeout_ms: 60000, connect_timeout_ms: 60000 }', ''].join('\n'));
  proc = spawn('valgrind', ['--tool=callgrind', `--callgrind-out-file=${OUT}`, bin, 'router', '--config', cfg,
    '--listen', '127.0.0.1:0', '--log-level', 'error'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const url = await new Promise((resolve, reject) => {
    let out = '';
    proc.stdout.on('data', (d) => {
      out += d;
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) resolve(m[1]);
    });
    proc.once('exit', (code) => reject(new Error(`router exited ${code}`)));
  });
  const req = createRequire(new URL('../tests/client/package.json', import.meta.url));
  const { createClient } = await import(pathToFileURL(req.resolve('@libsql/client')).href);
  const cl = createClient({ url: url.replace('http://', 'ws://') });
  let n = 0;
  let errors = 0;
  const t0 = Date.now();
  await Promise.all(Array.from({ length: CONC }, async () => {
    while (n < N) {
      const i = n++;
      try { await cl.execute(`SELECT v FROM kv WHERE id = ${(i % 1000) + 1} /* ${i} */`); } catch { errors++; }
    }
  }));
  cl.close();
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  proc.kill('SIGTERM');
  await exited;
  console.log(`RESULT name=router_ws_cost n=${N} conc=${CONC} errors=${errors} seconds=${(Date.now() - t0) / 1000} out=${OUT}`);
} finally {
  if (proc && proc.exitCode === null) proc.kill('SIGKILL');
  await c.destroy();
}
