/* SPDX-License-Identifier: MIT */
/* /v1/crdt/...: CRDT operations run on the writer thread (api/crdt_http.h); POST
 * /v1/crdt/sync waits on the loop for acknowledgements (hrana/wait.c). */
#include "api/node_int.h"

#include <http_parser.h>
#include <inttypes.h>
#include <string.h>

#include "api/crdt_http.h"
#include "core/alloc.h"

#define SYNC_TIMEOUT_MAX_MS 60000

void edge__api_crdt_sync_answer(struct edge_node *n, struct edge_http_conn *c, uint64_t seq, uint64_t start_ns)
{
    struct edge_buf b, down;
    edge_buf_init(&b, 1 << 20);
    edge_buf_init(&down, 1 << 20);
    struct edge_repl_state *st = &n->repl;
    int rv = edge_buf_puts(&b, "{\"bookmark\":");
    if (rv == EDGE_OK && seq > 0) {
        rv = edge_buf_printf(&b, "\"%s:%" PRIu64 "\"", n->region, seq);
    } else if (rv == EDGE_OK) {
        rv = edge_buf_puts(&b, "null");
    }
    if (rv == EDGE_OK) rv = edge_buf_printf(&b, ",\"seq\":%" PRIu64 ",\"acked\":[", seq);
    pthread_rwlock_rdlock(&st->peers_lock);
    int na = 0, nd = 0;
    for (int i = 0; i < st->n_peers && rv == EDGE_OK; i++) {
        struct edge_peer_status ps;
        edge_peer_status(st->peers[i], &ps);
        bool acked = ps.connected && edge_vclock_get(&ps.acked, n->region) >= seq;
        edge_vclock_close(&ps.acked);
        struct edge_buf *into = acked ? &b : &down;
        if ((acked ? na++ : nd++) > 0) rv = edge_buf_putc(into, ',');
        if (rv == EDGE_OK) rv = edge_buf_json_cstr(into, st->peer_region[i]);
    }
    pthread_rwlock_unlock(&st->peers_lock);
    if (rv == EDGE_OK) rv = edge_buf_puts(&b, "],\"unreachable\":[");
    if (rv == EDGE_OK) rv = edge_buf_append(&b, down.data ? down.data : "", down.len);
    if (rv == EDGE_OK) rv = edge_buf_puts(&b, "]}");
    edge__api_observe(n, EP_CRDT, start_ns, rv != EDGE_OK);
    if (rv == EDGE_OK) {
        edge_http_respond(c, 200, "application/json", NULL, b.data, b.len);
    } else {
        edge_http_respond_error(c, 503, "INTERNAL", "out of memory");
    }
    edge_buf_free(&b);
    edge_buf_free(&down);
}

/* POST /v1/crdt/sync [{"timeout_ms": N}]: every update this region made so far (its
 * whole log up to now, so also those made before a restart) is acknowledged by each
 * region whose link is up; a region that is down is listed as unreachable. */
static void crdt_sync(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req)
{
    struct edge_node *n = l->node;
    uint64_t timeout_ms = n->cfg.strong_timeout_ms ? n->cfg.strong_timeout_ms : 5000;
    if (req->method != HTTP_POST) {
        edge__api_respond_error(n, c, req, EP_CRDT, 405, "CRDT_METHOD", "POST /v1/crdt/sync");
        return;
    }
    if (req->body.len > 0) {
        json_error_t jerr;
        json_t *body = json_loadb(req->body.data, req->body.len, 0, &jerr);
        json_t *t = json_object_get(body, "timeout_ms");
        bool bad = body == NULL || !json_is_object(body) ||
                   (t != NULL && (!json_is_integer(t) || json_integer_value(t) < 1 ||
                                  json_integer_value(t) > SYNC_TIMEOUT_MAX_MS));
        if (!bad && t != NULL) timeout_ms = (uint64_t)json_integer_value(t);
        json_decref(body);
        if (bad) {
            edge__api_respond_error(n, c, req, EP_CRDT, 400, "CRDT_BAD_REQUEST",
                                    "the body is {} or {\"timeout_ms\": 1..60000}");
            return;
        }
    }
    struct edge_vclock vv;
    edge_vclock_init(&vv);
    edge_repl_state_vv(&n->repl, &vv);
    uint64_t seq = edge_vclock_get(&vv, n->region);
    edge_vclock_close(&vv);
    if (!n->repl.cluster || seq == 0) {
        edge__api_crdt_sync_answer(n, c, seq, req->start_ns);
        return;
    }
    edge__api_wait_reachable(l, c, seq, timeout_ms, req->start_ns);
}

void edge__api_crdt_handle(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, const char *sub)
{
    struct edge_node *n = l->node;
    if (strcmp(sub, "sync") == 0) {
        crdt_sync(l, c, req);
        return;
    }
    json_t *body = json_stringn(req->body.data ? req->body.data : "", req->body.len);
    if (body == NULL && req->body.len > 0) {
        edge__api_respond_error(n, c, req, EP_CRDT, 400, "CRDT_BAD_REQUEST", "the body is not valid UTF-8");
        return;
    }
    struct unit *u = edge__api_unit_new(l, c, body);
    if (u == NULL) {
        json_decref(body);
        edge__api_respond_error(n, c, req, EP_CRDT, 503, "INTERNAL", "out of memory");
        return;
    }
    u->start_ns = req->start_ns;
    u->crdt_method = edge_strdup(http_method_str((enum http_method)req->method));
    u->crdt_path = edge_strdup(sub);
    if (u->crdt_method == NULL || u->crdt_path == NULL) {
        edge__api_unit_free(u);
        edge__api_respond_error(n, c, req, EP_CRDT, 503, "INTERNAL", "out of memory");
        return;
    }
    /* The handler works in a savepoint, so CRDT operations join the group commit. */
    u->wjob.run = edge__api_unit_writer_run;
    u->wjob.run_batch = edge__api_unit_crdt_run_batch; /* with the CRDT requests queued next to it */
    u->wjob.complete = edge__api_unit_writer_complete;
    /* Bounded by limits.writer_queue like every client write: past it, 503 WRITER_BUSY. */
    int rv = edge_writer_try_submit(n->writer, &u->wjob);
    if (rv != EDGE_OK) {
        if (rv == EDGE_EAGAIN) edge__api_writer_busy_log(n);
        u->commit_status = rv == EDGE_EAGAIN ? EDGE_EAGAIN : EDGE_ECLOSED;
        edge__api_unit_finish(u);
    }
}
