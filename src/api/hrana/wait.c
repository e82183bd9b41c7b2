/* SPDX-License-Identifier: MIT */
/* Requests that wait: a read for its bookmark, a strong write for a majority. */
#include "api/node_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

enum wait_kind { WAIT_BOOKMARK, WAIT_MAJORITY };

struct waiter {
    uv_timer_t timer;
    struct loop *l;
    struct edge_http_conn *conn;
    enum wait_kind kind;
    uint64_t deadline_ms;
    uint64_t start_ns;
    /* bookmark */
    char origin[EDGE_VCLOCK_REGION_MAX + 1];
    uint64_t seq;
    struct edge_http_req *req;
    int version;
    enum hrana_access access;
    int mode;
    /* majority */
    struct edge_buf resp;
    struct ws_session *ws; /* a WebSocket answer: the session stays busy until it is sent */
    int64_t request_id;
};

static void waiter_closed(uv_handle_t *h)
{
    struct waiter *w = h->data;
    if (w->ws != NULL) {
        w->ws->busy = false;
        edge__api_ws_process(w->ws);
        edge__api_ws_unref(w->ws);
    }
    edge_http_conn_unref(w->conn);
    edge_buf_free(&w->resp);
    edge_free(w);
}

static void waiter_tick(uv_timer_t *t)
{
    struct waiter *w = t->data;
    struct edge_node *n = w->l->node;
    bool done = true;
    if (edge_http_conn_is_closed(w->conn) || w->l->stopping) {
        /* nobody to answer */
    } else if (w->kind == WAIT_BOOKMARK) {
        if (edge_repl_state_covers(&n->repl, w->origin, w->seq)) {
            edge__api_pipeline_handle(w->l, w->conn, w->req, w->version, w->access);
        } else if (mono_ms() >= w->deadline_ms) {
            char msg[256];
            snprintf(msg, sizeof(msg), "this region has not yet applied %s:%llu (waited %llu ms)", w->origin,
                     (unsigned long long)w->seq, (unsigned long long)n->cfg.bookmark_timeout_ms);
            edge__api_observe(n, EP_PIPELINE, w->start_ns, true);
            edge_http_respond_error(w->conn, 504, "BOOKMARK_TIMEOUT", msg);
        } else {
            done = false;
        }
    } else {
        if (edge_repl_acks_for(&n->repl, w->seq, NULL) >= edge_repl_majority_needed(&n->repl)) {
            if (w->ws != NULL) {
                if (!w->ws->closed) edge_http_ws_send(w->conn, 1, w->resp.data, w->resp.len);
                edge__api_observe(n, EP_WS, w->start_ns, false);
            } else {
                edge__api_pipeline_answer(n, w->conn, w->mode, n->region, w->seq, w->resp.data, w->resp.len, w->start_ns);
            }
        } else if (mono_ms() >= w->deadline_ms && w->ws != NULL) {
            char msg[256];
            snprintf(msg, sizeof(msg), "committed on the primary as %s:%llu but a majority did not confirm it in time",
                     n->region, (unsigned long long)w->seq);
            struct edge_buf b;
            edge_buf_init(&b, 4096);
            hrana_write_response_error(&b, w->request_id, msg, "STRONG_TIMEOUT");
            if (!w->ws->closed) edge_http_ws_send(w->conn, 1, b.data, b.len);
            edge_buf_free(&b);
            edge__api_observe(n, EP_WS, w->start_ns, true);
        } else if (mono_ms() >= w->deadline_ms) {
            char msg[256];
            snprintf(msg, sizeof(msg),
                     "the write committed on the primary as %s:%llu but a majority of regions did not confirm it "
                     "within %llu ms",
                     n->region, (unsigned long long)w->seq, (unsigned long long)n->cfg.strong_timeout_ms);
            edge__api_observe(n, EP_PIPELINE, w->start_ns, true);
            edge_http_respond_error(w->conn, 504, "STRONG_TIMEOUT", msg);
        } else {
            done = false;
        }
    }
    if (done) {
        uv_close((uv_handle_t *)&w->timer, waiter_closed);
    } else {
        uv_timer_start(&w->timer, waiter_tick, 2, 0);
    }
}

static struct waiter *waiter_new(struct loop *l, struct edge_http_conn *c, enum wait_kind kind, uint64_t timeout_ms)
{
    struct waiter *w = edge_calloc(1, sizeof(*w));
    if (w == NULL) return NULL;
    w->l = l;
    w->conn = c;
    edge_http_conn_ref(c);
    w->kind = kind;
    w->deadline_ms = mono_ms() + timeout_ms;
    edge_buf_init(&w->resp, (size_t)1 << 31);
    uv_timer_init(&l->loop, &w->timer);
    w->timer.data = w;
    return w;
}

void edge__api_wait_majority(struct loop *l, struct edge_http_conn *c, uint64_t seq, struct edge_buf *resp, int mode,
                          uint64_t start_ns)
{
    struct edge_node *n = l->node;
    struct waiter *w = waiter_new(l, c, WAIT_MAJORITY, n->cfg.strong_timeout_ms);
    if (w == NULL) {
        edge_http_respond_error(c, 503, "INTERNAL", "out of memory");
        return;
    }
    w->seq = seq;
    w->mode = mode;
    w->start_ns = start_ns;
    edge_buf_append(&w->resp, resp->data ? resp->data : "", resp->len);
    waiter_tick(&w->timer);
}

/* Park a WebSocket answer of a strong write until a majority holds its entry; the
 * waiter takes over the unit's session reference and busy flag. */
bool edge__api_wait_majority_ws(struct unit *u, struct ws_session *s, uint64_t seq)
{
    struct edge_node *n = u->loop->node;
    struct waiter *w = waiter_new(u->loop, s->conn, WAIT_MAJORITY, n->cfg.strong_timeout_ms);
    if (w == NULL) return false;
    w->seq = seq;
    w->ws = s;
    w->request_id = u->request_id;
    w->start_ns = u->start_ns;
    edge_buf_append(&w->resp, u->out.data ? u->out.data : "", u->out.len);
    waiter_tick(&w->timer);
    return true;
}

bool edge__api_bookmark_parse(const char *bm, char origin[EDGE_VCLOCK_REGION_MAX + 1], uint64_t *seq)
{
    const char *colon = strrchr(bm, ':');
    char *end = NULL;
    unsigned long long v = colon ? strtoull(colon + 1, &end, 10) : 0;
    if (colon == NULL || colon == bm || (size_t)(colon - bm) > EDGE_VCLOCK_REGION_MAX || end == NULL || *end != '\0' ||
        v == 0) {
        return false;
    }
    memcpy(origin, bm, (size_t)(colon - bm));
    origin[colon - bm] = '\0';
    *seq = v;
    return true;
}

/* A read with X-Edge-Bookmark: serve it once this region has applied the write.
 * Returns true if the request was parked (or answered). */
bool edge__api_wait_bookmark(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, int version,
                            enum hrana_access access)
{
    struct edge_node *n = l->node;
    const char *bm = edge_http_header(req, "x-edge-bookmark");
    if (bm == NULL || !n->repl.cluster) return false;
    char origin[EDGE_VCLOCK_REGION_MAX + 1];
    uint64_t seq = 0;
    if (!edge__api_bookmark_parse(bm, origin, &seq)) {
        edge__api_respond_error(n, c, req, EP_PIPELINE, 400, "BOOKMARK_INVALID", "X-Edge-Bookmark must be REGION:SEQ");
        return true;
    }
    if (edge_repl_state_covers(&n->repl, origin, seq)) return false;
    struct waiter *w = waiter_new(l, c, WAIT_BOOKMARK, n->cfg.bookmark_timeout_ms);
    if (w == NULL) {
        edge__api_respond_error(n, c, req, EP_PIPELINE, 503, "INTERNAL", "out of memory");
        return true;
    }
    snprintf(w->origin, sizeof(w->origin), "%s", origin);
    w->seq = seq;
    w->req = req;
    w->version = version;
    w->access = access;
    w->start_ns = req->start_ns;
    uv_timer_start(&w->timer, waiter_tick, 2, 0);
    return true;
}
