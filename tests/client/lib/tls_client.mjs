// SPDX-License-Identifier: MIT
// Child process of the TLS tests: the real @libsql/client against one URL (https:// or wss://),
// started with or without NODE_EXTRA_CA_CERTS. Usage: node tls_client.mjs URL TABLE.
// Prints one JSON line: { ok: true, rows } or { ok: false, error, code, cause }.
import { createClient } from '@libsql/client';

const [url, table] = process.argv.slice(2);
const db = createClient({ url });
try {
  await db.execute(`CREATE TABLE IF NOT EXISTS ${table} (id INTEGER PRIMARY KEY, v TEXT)`);
  await db.execute({ sql: `INSERT INTO ${table} (v) VALUES (?)`, args: [`via ${url.split(':')[0]}`] });
  const rs = await db.batch([`SELECT id, v FROM ${table} ORDER BY id`], 'read');
  console.log(JSON.stringify({ ok: true, rows: rs[0].rows.map((r) => [Number(r.id), r.v]) }));
} catch (e) {
  // The reason may sit a few causes deep (fetch failed <- certificate error).
  let cause = e;
  const chain = [];
  for (let i = 0; cause && i < 6; i++, cause = cause.cause) chain.push(`${cause.code ?? ''} ${cause.message ?? cause}`);
  console.log(JSON.stringify({ ok: false, error: String(e.message ?? e), code: e.code ?? null, cause: chain.join(' <- ') }));
} finally {
  db.close();
}
