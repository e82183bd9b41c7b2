// SPDX-License-Identifier: MIT
// Latency samples and their percentiles for the demo summary.

/** Nearest-rank percentile (p in 0..100) of an ascending array; NaN when empty. */
export function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

/** A bounded sample of latencies in ms: keeps the first `cap` values, counts all of them. */
export class Samples {
  constructor(cap = 200000) {
    this.cap = cap;
    this.values = [];
    this.count = 0;
  }

  add(ms) {
    this.count++;
    if (this.values.length < this.cap) this.values.push(ms);
  }

  merge(other) {
    for (const v of other.values) this.add(v);
    this.count += other.count - other.values.length;
    return this;
  }

  summary() {
    const s = this.values.slice().sort((a, b) => a - b);
    return { n: this.count, p50: percentile(s, 50), p95: percentile(s, 95), p99: percentile(s, 99), max: s[s.length - 1] ?? NaN };
  }
}

export function fmtMs(v) {
  if (!Number.isFinite(v)) return '-';
  return v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0);
}

export const nowMs = () => Number(process.hrtime.bigint()) / 1e6;
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
