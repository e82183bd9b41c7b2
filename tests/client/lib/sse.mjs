// SPDX-License-Identifier: MIT
// The Server-Sent Events stream of /v1/realtime/sse (docs/realtime.md), parsed as it arrives, for the
// tests that read the change feed over SSE.

import http from 'node:http';

/**
 * GET base/v1/realtime/sse?query with headers (e.g. Last-Event-ID). Resolves once the answer's head
 * is in: { status, type (its content-type), events, messages, ready, res }. events holds every event
 * so far as { event ('message' unless named), id (null if none), data, json (data parsed, null if not
 * JSON) }; messages the json of the `message` events that carry data; ready whether a `ready` event
 * came. res.destroy() ends the stream.
 */
export function openSse(base, query, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.get(new URL(`${base}/v1/realtime/sse?${query}`), { headers }, (res) => {
      const s = {
        status: res.statusCode, type: res.headers['content-type'], events: [], text: '', res,
        get messages() { return s.events.filter((e) => e.event === 'message' && e.data).map((e) => e.json); },
        get ready() { return s.events.some((e) => e.event === 'ready'); },
      };
      res.setEncoding('utf8');
      res.on('data', (d) => {
        s.text += d;
        let i;
        while ((i = s.text.indexOf('\n\n')) >= 0) {
          const block = s.text.slice(0, i);
          s.text = s.text.slice(i + 2);
          const ev = { event: 'message', id: null, data: '', json: null };
          for (const line of block.split('\n')) {
            if (line.startsWith('id: ')) ev.id = line.slice(4);
            else if (line.startsWith('event: ')) ev.event = line.slice(7);
            else if (line.startsWith('data: ')) ev.data += line.slice(6);
          }
          try { ev.json = JSON.parse(ev.data); } catch { /* not JSON */ }
          s.events.push(ev);
        }
      });
      resolve(s);
    });
    req.on('error', reject);
  });
}
