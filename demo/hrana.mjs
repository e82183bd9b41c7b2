// SPDX-License-Identifier: MIT
// Raw HTTP access to a region for the parts of the demo the npm client cannot do: it hides the
// X-Edge-Bookmark header, and /v1/status and /metrics are not SQL.

function toValue(v) {
  if (v === null || v === undefined) return { type: 'null' };
  if (typeof v === 'bigint') return { type: 'integer', value: v.toString() };
  if (typeof v === 'number') return Number.isInteger(v) ? { type: 'integer', value: String(v) } : { type: 'float', value: v };
  return { type: 'text', value: String(v) };
}

/**
 * One statement through POST /v2/pipeline. Resolves { rows, bookmark, affected } where rows keep the
 * Hrana value objects (integers stay exact strings, which the checksums rely on); rejects with an Error
 * carrying .code on an HTTP or SQL error.
 */
export async function pipeline(base, sql, args = [], timeoutMs = 10000) {
  const body = { requests: [{ type: 'execute', stmt: { sql, args: args.map(toValue), want_rows: true } }, { type: 'close' }] };
  const res = await fetch(`${base}/v2/pipeline`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  if (res.status !== 200) {
    const e = new Error(`HTTP ${res.status}: ${json?.message ?? json?.error ?? text.slice(0, 200)}`);
    e.code = json?.code ?? `HTTP_${res.status}`;
    throw e;
  }
  const r0 = json?.results?.[0];
  if (r0?.type !== 'ok') {
    const e = new Error(r0?.error?.message ?? 'malformed pipeline response');
    e.code = r0?.error?.code ?? 'PROTOCOL';
    throw e;
  }
  const result = r0.response.result;
  return { rows: result.rows ?? [], bookmark: res.headers.get('x-edge-bookmark'), affected: result.affected_row_count ?? 0 };
}

/** The plain JS value of a Hrana value object (integers as Number: fine for the demo's small values). */
export function plain(v) {
  if (!v || v.type === 'null') return null;
  if (v.type === 'integer') return Number(v.value);
  return v.value;
}

export async function status(base, timeoutMs = 3000) {
  const res = await fetch(`${base}/v1/status`, { signal: AbortSignal.timeout(timeoutMs) });
  if (res.status !== 200) throw new Error(`GET /v1/status: HTTP ${res.status}`);
  return res.json();
}

/** Total of the conflicts a region recorded (GET /v1/conflicts "total"). */
export async function conflictsRecorded(base, timeoutMs = 3000) {
  const res = await fetch(`${base}/v1/conflicts`, { signal: AbortSignal.timeout(timeoutMs) });
  if (res.status !== 200) throw new Error(`GET /v1/conflicts: HTTP ${res.status}`);
  // hlc values exceed 2^53; they are not used here, but keep JSON.parse from rounding them silently.
  const text = (await res.text()).replace(/"hlc":(\d+)/g, '"hlc":"$1"');
  return JSON.parse(text).total ?? 0;
}

/** The unlabelled samples of a Prometheus text page, plus labelled ones keyed by their full name. */
export async function metrics(base, timeoutMs = 3000) {
  const res = await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(timeoutMs) });
  if (res.status !== 200) throw new Error(`GET /metrics: HTTP ${res.status}`);
  const out = new Map();
  for (const line of (await res.text()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    if (sp > 0) out.set(line.slice(0, sp), Number(line.slice(sp + 1)));
  }
  return out;
}
