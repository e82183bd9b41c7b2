// SPDX-License-Identifier: MIT
// Certificates bound to regions (issue 9; docs/security.md, "A network attacker"): with mutual TLS
// (cluster.ca_file), a client certificate valid under the cluster's CA but naming region b
// (DNS SAN "b") cannot open a peer link as region d: a and b refuse it with CERT_REGION (visible in
// d's /v1/status), and none of d's updates is applied there, while a and b, whose certificates name
// themselves, link and converge.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { sleep } from './lib/cluster.mjs';
import { httpsRequest, makeServerCert, tlsRegions, until } from './lib/tls.mjs';

const IDS = ['a', 'b', 'd']; // d runs with b's certificate
let tr;
let ca;

const url = (id) => tr.url(id);
const status = (id) => tr.status(id);

const inc = (id, name) => httpsRequest(`${url(id)}/v1/crdt/${name}`, {
  ca: ca.cert, method: 'POST', body: { type: 'g-counter', op: 'increment', amount: 5 },
});

describe('TLS certificates bound to regions', () => {
  before(async () => {
    tr = await tlsRegions('edgelite-tlsregion-', IDS);
    ca = tr.ca;
    makeServerCert(tr.dir, ca, 'region-a', 'IP:127.0.0.1,DNS:a');
    makeServerCert(tr.dir, ca, 'region-b', 'IP:127.0.0.1,DNS:b');
    const certOf = { a: 'region-a', b: 'region-b', d: 'region-b' };
    tr.writeConfig('tlsregion', (id) => certOf[id]);
    for (const id of IDS) await tr.spawn(id);
  });

  after(async () => { if (tr) await tr.stop(); });

  test("a certificate of region b cannot link as region d", async () => {
    // d's links to a and b are refused for its certificate
    const dst = await until("d's links refused by a and b", async () => {
      const st = await status('d');
      const bad = st.peers.filter((x) => !x.connected && /CERT_REGION/.test(x.last_error ?? ''));
      return bad.length === 2 ? st : null;
    });
    assert.ok(dst.peers.every((p) => !p.connected));
    // a and b link to each other; an update of a reaches b, one of d reaches neither
    assert.equal((await inc('d', 'from_d')).status, 200);
    assert.equal((await inc('a', 'from_a')).status, 200);
    await until("a's counter in b", async () => {
      const res = await httpsRequest(`${url('b')}/v1/crdt/from_a`, { ca: ca.cert });
      return res.status === 200 && Number(res.json.value) === 5;
    });
    await sleep(500);
    for (const id of ['a', 'b']) {
      const res = await httpsRequest(`${url(id)}/v1/crdt/from_d`, { ca: ca.cert });
      assert.ok(res.status === 404 || Number(res.json?.value) === 0, `${id} has d's update: ${res.status} ${res.text}`);
      assert.ok(!(await status(id)).version_vector.d, `${id} applied entries of d`);
    }
    assert.match(tr.errs.a + tr.errs.b, /peer link claiming region d refused: its certificate is not d's/);
    for (const id of IDS) assert.equal(tr.procs[id].exitCode, null, `region ${id} is still running`);
  });
});
