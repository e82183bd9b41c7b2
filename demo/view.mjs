// SPDX-License-Identifier: MIT
// The demo's live view. On a terminal it redraws one block in place (cursor up + clear line) every
// refresh; otherwise (make demo | tee, CI logs) it prints one compact line per second, because
// escape sequences and a line every 500 ms would make a log unreadable.

const pad = (s, n) => String(s).padStart(n);

/** rows: [{ id, role, wps, lagMs, pending, conflicts, vvSum, up }] */
function table(rows, header) {
  const lines = [header, `  ${'REGION'.padEnd(16)}${'ROLE'.padEnd(9)}${pad('WRITES/S', 9)}${pad('LAG ms', 9)}` +
    `${pad('PENDING', 9)}${pad('CONFLICTS', 11)}${pad('LOG SEQ', 9)}`];
  for (const r of rows) {
    if (!r.up) {
      lines.push(`  ${r.id.padEnd(16)}${'(no answer to /v1/status)'}`);
      continue;
    }
    lines.push(`  ${r.id.padEnd(16)}${r.role.padEnd(9)}${pad(r.wps.toFixed(0), 9)}${pad(r.lagMs.toFixed(0), 9)}` +
      `${pad(r.pending, 9)}${pad(r.conflicts, 11)}${pad(r.vvSum, 9)}`);
  }
  return lines;
}

export class LiveView {
  constructor(stream = process.stdout) {
    this.stream = stream;
    this.tty = Boolean(stream.isTTY) && process.env.TERM !== 'dumb';
    this.drawn = 0;
    this.lastLineAt = -Infinity;
  }

  /** Redraw (TTY) or, at most once per second, print a compact line (not a TTY). */
  update(elapsedS, totalS, rows, extra = '') {
    if (this.tty) {
      const lines = table(rows, `live  t=${elapsedS.toFixed(1)}s/${totalS}s  ${extra}`);
      let s = this.drawn > 0 ? `\x1b[${this.drawn}A` : '';
      for (const l of lines) s += `\x1b[2K${l}\n`;
      this.stream.write(s);
      this.drawn = lines.length;
      return;
    }
    if (elapsedS - this.lastLineAt < 1 - 1e-6) return;
    this.lastLineAt = elapsedS;
    const parts = rows.map((r) => (r.up
      ? `${r.id} w/s=${r.wps.toFixed(0)} lag=${r.lagMs.toFixed(0)}ms pend=${r.pending} cf=${r.conflicts}`
      : `${r.id} down`));
    this.stream.write(`t=${elapsedS.toFixed(0).padStart(3)}s ${parts.join(' | ')}${extra ? ` | ${extra}` : ''}\n`);
  }
}
