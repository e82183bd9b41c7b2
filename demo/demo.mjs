// The demo workload: a short, bounded tour of edgelite through the unmodified
// @libsql/client, over HTTP and over WebSocket, with timings.
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

// The client is installed (pinned by a lockfile) in tests/client by scripts/bootstrap.sh.
const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "..", "tests", "client", "package.json"));
const { createClient } = require("@libsql/client");

const base = process.argv[2] ?? "http://127.0.0.1:8080";
const ms = (t0) => (Number(process.hrtime.bigint() - t0) / 1e6).toFixed(2);
const pct = (xs, p) => xs.slice().sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];

async function tour(url) {
  const c = createClient({ url });
  const log = (what, t0, extra = "") => console.log(`  ${what.padEnd(44)} ${ms(t0).padStart(8)} ms ${extra}`);
  console.log(`\n${url}`);
  let t = process.hrtime.bigint();
  await c.execute("CREATE TABLE IF NOT EXISTS accounts (id INTEGER PRIMARY KEY, owner TEXT NOT NULL, balance INTEGER NOT NULL)");
  log("create table", t);
  t = process.hrtime.bigint();
  const ins = await c.execute({ sql: "INSERT INTO accounts (owner, balance) VALUES (?, ?)", args: ["alice", 100] });
  log("insert (positional args)", t, `rowid=${ins.lastInsertRowid}`);
  t = process.hrtime.bigint();
  await c.execute({ sql: "INSERT INTO accounts (owner, balance) VALUES (:owner, :balance)", args: { owner: "bob", balance: 50n } });
  log("insert (named args, bigint)", t);
  t = process.hrtime.bigint();
  const batch = await c.batch(
    Array.from({ length: 100 }, (_, i) => ({ sql: "INSERT INTO accounts (owner, balance) VALUES (?, ?)", args: [`user${i}`, i] })),
    "write");
  log("batch of 100 inserts (one transaction)", t, `${batch.length} results`);
  t = process.hrtime.bigint();
  const tx = await c.transaction("write");
  await tx.execute({ sql: "UPDATE accounts SET balance = balance - 30 WHERE owner = ?", args: ["alice"] });
  await tx.execute({ sql: "UPDATE accounts SET balance = balance + 30 WHERE owner = ?", args: ["bob"] });
  await tx.commit();
  log("transaction: transfer 30 alice -> bob", t);
  t = process.hrtime.bigint();
  try {
    await c.batch(["INSERT INTO accounts (owner, balance) VALUES ('carol', 1)", "INSERT INTO accounts (id, owner, balance) VALUES (1, 'dup', 0)"], "write");
  } catch (e) {
    log("failing batch rolled back", t, `(${e.code})`);
  }
  const carol = await c.execute("SELECT count(*) AS n FROM accounts WHERE owner = 'carol'");
  console.log(`  ${"carol present after the rollback?".padEnd(44)} ${carol.rows[0].n === 0 ? "no (correct)" : "YES (wrong)"}`);
  const lat = [];
  const t1 = process.hrtime.bigint();
  for (let i = 0; i < 200; i++) {
    const s = process.hrtime.bigint();
    await c.execute({ sql: "SELECT owner, balance FROM accounts WHERE id = ?", args: [1 + (i % 100)] });
    lat.push(Number(process.hrtime.bigint() - s) / 1e6);
  }
  console.log(`  ${"200 sequential point reads".padEnd(44)} ${ms(t1).padStart(8)} ms p50=${pct(lat, 50).toFixed(3)} ms p95=${pct(lat, 95).toFixed(3)} ms`);
  t = process.hrtime.bigint();
  await Promise.all(Array.from({ length: 20 }, (_, i) => c.execute({ sql: "SELECT balance FROM accounts WHERE id = ?", args: [i + 1] })));
  log("20 concurrent reads", t);
  const sum = await c.execute("SELECT count(*) AS n, sum(balance) AS total FROM accounts");
  console.log(`  rows=${sum.rows[0].n} total balance=${sum.rows[0].total}`);
  c.close();
}

const wsUrl = base.replace(/^http/, "ws");
await tour(base);
await tour(wsUrl);
const status = await (await fetch(`${base}/v1/status`)).json();
console.log(`\nsummary: region=${status.region} version=${status.version} db_size=${status.db_size_bytes} bytes uptime=${status.uptime_s.toFixed(1)} s`);
const metrics = await (await fetch(`${base}/metrics`)).text();
for (const line of metrics.split("\n")) {
  if (/^edgelite_(statements_total|units_total|writer_groups_total|http_requests_total\{endpoint="pipeline"\})/.test(line)) console.log(`  ${line}`);
}
