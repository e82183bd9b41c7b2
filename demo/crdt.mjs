// SPDX-License-Identifier: MIT
// The CRDT section of the demo (docs/crdt.md): every region increments one counter and adds to one set at
// the same time, each asks POST /v1/crdt/sync to wait until the other regions acknowledged, and then every
// region must answer the same exact values, with no manual merge.

const post = async (url, path, body) => {
  const res = await fetch(url + path, { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body), signal: AbortSignal.timeout(15000) });
  return { status: res.status, json: await res.json() };
};
const get = async (url, path) => (await fetch(url + path, { signal: AbortSignal.timeout(15000) })).json();

/** Returns true when every region holds the exact values. */
export async function crdtSection(regions, say) {
  const t0 = Date.now();
  const N = 20;
  await Promise.all(regions.map(async (r) => {
    for (let i = 0; i < N; i++) await post(r.url, '/v1/crdt/demo-visits', { type: 'pn-counter', op: 'increment', amount: 1 });
    await post(r.url, '/v1/crdt/demo-tags', { type: 'or-set', op: 'add', element: r.id });
  }));
  const syncs = await Promise.all(regions.map((r) => post(r.url, '/v1/crdt/sync', { timeout_ms: 10000 })));
  const ms = Date.now() - t0;
  const want = N * regions.length;
  let ok = syncs.every((s) => s.status === 200);
  const seen = [];
  for (const r of regions) {
    const v = await get(r.url, '/v1/crdt/demo-visits');
    const s = await get(r.url, '/v1/crdt/demo-tags');
    ok = ok && v.value === want && s.value.length === regions.length;
    seen.push(`${r.id} ${v.value} (merged ${v.merges ?? 0}, concurrent ${v.concurrent ?? 0})`);
  }
  say('');
  say(`CRDTs: ${regions.length} x ${N} concurrent increments and one set add per region, then sync (${ms} ms)`);
  say(`  demo-visits = ${want} expected: ${seen.join(', ')}  ${ok ? 'OK' : 'FAIL'}`);
  return ok;
}
