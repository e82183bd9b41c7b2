/* SPDX-License-Identifier: MIT */
/* The /v1/crdt HTTP API, transport-free: the server hands over method, the path below
 * "/v1/crdt/" and the body, and gets back a status and a JSON body.
 *
 *   GET  /v1/crdt               -> {"objects":[{"name","type","value"},...]}
 *   GET  /v1/crdt/{name}        -> {"name","type","value","vclock","conflicts","state",
 *                                   "merges","concurrent","regions":{r:{"merges","concurrent"}}}
 *   GET  /v1/crdt/stats         -> {"objects":[{"name","type","conflicts","merges","concurrent","regions"}]}
 *   POST /v1/crdt/{name}        {"type","op",...} -> {"name","type","value"}
 *   POST /v1/crdt/{name}/merge  {"type","state":"<base64>"} -> like GET
 *   (POST /v1/crdt/sync waits for acknowledgements: api/crdt_route.c, not here.)
 *
 * With a change capture, every update is also recorded as its delta (repl.h
 * edge_capture_crdt), so it travels in the replication log with the transaction that
 * saved it; "merges"/"regions" count the deltas of other regions merged here.
 *
 * Errors are {"error":"message","code":"CRDT_*"} with 400 (bad input), 404 (unknown
 * object or route), 405, 409 (type mismatch, counter overflow) or 500. */
#ifndef EDGE_API_CRDT_HTTP_H
#define EDGE_API_CRDT_HTTP_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/clock.h"
#include "repl/repl.h"

/* One request of a batch: method, subpath, body borrowed; status and out (appended to)
 * are the answer. */
struct edge_crdt_http_call {
    const char *method;
    const char *subpath;
    const char *body;
    size_t body_len;
    int status;
    struct edge_buf *out;
};

/* Handle n requests in order, as if one after the other, in one savepoint (inside the
 * writer's group transaction, or a transaction of its own in autocommit): an object
 * updated by several of them is loaded and decoded once and encoded and saved once,
 * which is most of what an update costs. Each answer is what that request alone would
 * have got: the value after its own update; a refused request changes nothing. A store
 * error while saving takes back the whole batch (every request answers 500 CRDT_STORE,
 * and nothing is kept, deltas included). EDGE_OK when every call has its answer. */
int edge_crdt_http_handle_batch(sqlite3 *db, struct edge_capture *cap, const char *region,
                                const struct edge_clock *clock, struct edge_crdt_http_call *calls, size_t n);

/* Handle one request (a batch of one). Writer thread only: db is the node's write
 * connection (borrowed); writes run in a savepoint and are rolled back on any error,
 * so a refused request changes nothing. cap (borrowed, may be NULL) is the connection's
 * change capture: updates are recorded there as deltas. region (borrowed) stamps local updates; clock
 * (borrowed) supplies HLC time. subpath is "" for the collection, "name" or
 * "name/merge" (URL-encoded). *out_status and out_json (appended to) are always set
 * when EDGE_OK is returned, error responses included; other returns (EDGE_ENOMEM,
 * EDGE_ETOOBIG from out_json's cap) mean no usable response was produced. */
int edge_crdt_http_handle(sqlite3 *db, struct edge_capture *cap, const char *region, const struct edge_clock *clock,
                          const char *method, const char *subpath, const char *body, size_t body_len, int *out_status,
                          struct edge_buf *out_json);

/* Process-wide totals since start, for /metrics: applied operations, merges, and merges
 * that combined concurrent updates. Any thread. */
void edge_crdt_http_stats(uint64_t *out_ops, uint64_t *out_merges, uint64_t *out_conflicts);

#endif
