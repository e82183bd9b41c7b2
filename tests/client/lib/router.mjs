// SPDX-License-Identifier: MIT
// `edgelite router` started as a child process for the front-door tests: resolves once it prints the address it
// listens on, with its process and a reader of its stderr; rejects if it exits first or is not up within 15 s.
import { spawn } from 'node:child_process';

import { EDGE_BIN } from './cluster.mjs';

export function startRouter(config, extra = []) {
  const proc = spawn(EDGE_BIN, ['router', '--config', config, '--listen', '127.0.0.1:0', '--log-level', 'warn',
    ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stderr.on('data', (d) => { err += d; });
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error(`router did not start: ${err}`)); }, 15000);
    proc.stdout.on('data', (d) => {
      out += d;
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) { clearTimeout(t); resolve({ proc, url: m[1], stderr: () => err }); }
    });
    proc.once('exit', (code) => { clearTimeout(t); reject(new Error(`router exited ${code}: ${err}`)); });
  });
}
