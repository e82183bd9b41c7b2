/* SPDX-License-Identifier: MIT */
/* Requests that wait: a read for its bookmark, a strong write for a majority, a CRDT
 * sync for every reachable region.
 *
 * DESIGN: waiting costs nothing until the awaited event. Each loop keeps its waiters in
 * heaps: bookmark waiters per origin by seq, majority waiters by seq, and all of them
 * by deadline. The replication state wakes every loop (repl/state.h `wake` ->
 * node.c on_wake) after a local commit, an applied remote batch or a peer's ACK; the
 * loop then reads the version vector once (and walks the links once for the highest
 * entry a majority holds) and answers the waiters at the top of each heap that are now
 * covered. One timer per loop is armed at the earliest deadline only. A connection that
 * closes while waiting drops its waiter at once (edge_http_conn_watch_close). Waiters are
 * taken out of every heap before they are answered: answering may run the next
 * pipelined request of the connection, which may park again. Everything here runs on
 * the loop thread that owns the waiters; other threads reach it only through the
 * loop's wake_async. */
#include "api/node_int.h"
#include "realtime/rt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

enum wait_kind { WAIT_BOOKMARK, WAIT_MAJORITY, WAIT_REACHABLE };

/* A node of a min-heap: its key and where it sits, so it can be removed. */
struct hnode {
    uint64_t key;
    size_t pos;
};

struct heap {
    struct hnode **v;
    size_t n, cap;
};

struct origin_q {
    char origin[EDGE_VCLOCK_REGION_MAX + 1];
    struct heap by_seq;
};

struct edge__api_waits {
    struct loop *l;
    uv_timer_t timer;
    uint64_t timer_due; /* 0: not armed */
    struct heap by_deadline;
    struct heap majority; /* by seq */
    struct heap reachable; /* CRDT syncs, by seq */
    struct origin_q *origins;
    size_t n_origins, cap_origins;
    bool closing;
};

struct waiter {
    struct hnode dl;  /* in by_deadline, key = deadline (mono ms) */
    struct hnode sq;  /* in majority or its origin's by_seq, key = seq */
    struct waiter *next; /* a batch being answered */
    struct loop *l;
    struct edge_http_conn *conn;
    enum wait_kind kind;
    uint64_t start_ns;
    /* bookmark */
    char origin[EDGE_VCLOCK_REGION_MAX + 1];
    struct edge_http_req *req;
    int version;
    enum hrana_access access;
    bool first_wait; /* router.bookmark_wait_ms: at its end the router looks for a region that has the write */
    int mode;
    /* majority */
    struct edge_buf resp;
    struct ws_session *ws; /* a WebSocket answer: the session stays busy until it is sent */
    int64_t request_id;
    json_t *ws_msg; /* a WebSocket request waiting for its bookmark: run again when ready */
    bool ws_rerun;  /* ws_msg ran again: the session's busy flag is its own now */
};

#define SQ_WAITER(h) ((struct waiter *)((char *)(h) - offsetof(struct waiter, sq)))
#define DL_WAITER(h) ((struct waiter *)((char *)(h) - offsetof(struct waiter, dl)))

/* ---------------------------------------------------------------------------------- */
/* A binary min-heap with removal                                                     */
/* ---------------------------------------------------------------------------------- */

static void heap_set(struct heap *h, size_t i, struct hnode *x)
{
    h->v[i] = x;
    x->pos = i;
}

static void heap_up(struct heap *h, size_t i)
{
    struct hnode *x = h->v[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h->v[p]->key <= x->key) break;
        heap_set(h, i, h->v[p]);
        i = p;
    }
    heap_set(h, i, x);
}

static void heap_down(struct heap *h, size_t i)
{
    struct hnode *x = h->v[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && h->v[c + 1]->key < h->v[c]->key) c++;
        if (h->v[c]->key >= x->key) break;
        heap_set(h, i, h->v[c]);
        i = c;
    }
    heap_set(h, i, x);
}

static int heap_push(struct heap *h, struct hnode *x)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 16;
        struct hnode **v = edge_realloc(h->v, cap * sizeof(*v));
        if (v == NULL) return EDGE_ENOMEM;
        h->v = v;
        h->cap = cap;
    }
    h->v[h->n++] = x;
    heap_up(h, h->n - 1);
    return EDGE_OK;
}

static void heap_remove(struct heap *h, struct hnode *x)
{
    size_t i = x->pos;
    struct hnode *last = h->v[--h->n];
    if (i == h->n) return;
    heap_set(h, i, last);
    if (i > 0 && h->v[(i - 1) / 2]->key > last->key) {
        heap_up(h, i);
    } else {
        heap_down(h, i);
    }
}

static struct hnode *heap_top(const struct heap *h)
{
    return h->n ? h->v[0] : NULL;
}

/* ---------------------------------------------------------------------------------- */
/* The loop's wait lists                                                              */
/* ---------------------------------------------------------------------------------- */

static struct origin_q *origin_find(struct edge__api_waits *ws, const char *origin, size_t *idx)
{
    for (size_t i = 0; i < ws->n_origins; i++) {
        if (strcmp(ws->origins[i].origin, origin) == 0) {
            if (idx) *idx = i;
            return &ws->origins[i];
        }
    }
    return NULL;
}

static void on_deadline(uv_timer_t *t);

/* Arm the one timer at the earliest deadline (or stop it). */
static void arm(struct edge__api_waits *ws)
{
    struct hnode *top = heap_top(&ws->by_deadline);
    if (top == NULL || ws->closing) {
        if (ws->timer_due != 0) uv_timer_stop(&ws->timer);
        ws->timer_due = 0;
        return;
    }
    if (ws->timer_due == top->key) return;
    uint64_t now = mono_ms();
    uint64_t delay = top->key > now ? top->key - now : 0;
    ws->timer_due = top->key;
    uv_timer_start(&ws->timer, on_deadline, delay, 0);
}

static void on_closed_conn(void *ud, struct edge_http_conn *c);

/* Take w out of every heap and off its connection. */
static void detach(struct edge__api_waits *ws, struct waiter *w)
{
    heap_remove(&ws->by_deadline, &w->dl);
    if (w->kind == WAIT_MAJORITY) {
        heap_remove(&ws->majority, &w->sq);
    } else if (w->kind == WAIT_REACHABLE) {
        heap_remove(&ws->reachable, &w->sq);
    } else {
        size_t idx = 0;
        struct origin_q *q = origin_find(ws, w->origin, &idx);
        if (q != NULL) {
            heap_remove(&q->by_seq, &w->sq);
            if (q->by_seq.n == 0) {
                edge_free(q->by_seq.v);
                ws->origins[idx] = ws->origins[--ws->n_origins];
            }
        }
    }
    edge_http_conn_watch_close(w->conn, NULL, NULL);
    atomic_fetch_sub(&ws->l->node->m.waiting[w->kind], 1);
}

static void waiter_free(struct waiter *w)
{
    if (w->ws != NULL) {
        if (!w->ws_rerun) w->ws->busy = false;
        /* The session's next message, unless the loop is stopping (nothing more runs). */
        if (!w->l->stopping) edge__api_ws_process(w->ws);
        edge__api_ws_unref(w->ws);
    }
    json_decref(w->ws_msg);
    edge_http_conn_unref(w->conn);
    edge_buf_free(&w->resp);
    edge_free(w);
}

/* The awaited event happened: serve the read, or send the strong write's answer. */
static void answer_ready(struct waiter *w)
{
    struct edge_node *n = w->l->node;
    if (edge_http_conn_is_closed(w->conn) || w->l->stopping) return; /* nobody to answer */
    if (w->kind == WAIT_BOOKMARK && w->ws != NULL) {
        /* The WebSocket request runs now, in its place in the session's order (it may
         * park again for the next origin of a vector). */
        if (!w->ws->closed) {
            w->ws->busy = false;
            w->ws_rerun = true;
            edge__api_ws_handle(w->ws, w->ws_msg);
        }
    } else if (w->kind == WAIT_BOOKMARK) {
        /* A vector bookmark waits for its origins one after the other. */
        if (!edge__api_wait_bookmark(w->l, w->conn, w->req, w->version, w->access)) {
            edge__api_pipeline_handle(w->l, w->conn, w->req, w->version, w->access);
        }
    } else if (w->kind == WAIT_REACHABLE) {
        edge__api_crdt_sync_answer(n, w->conn, w->sq.key, w->start_ns);
    } else if (w->ws != NULL) {
        if (!w->ws->closed) edge_http_ws_send(w->conn, 1, w->resp.data, w->resp.len);
        edge__api_observe(n, EP_WS, w->start_ns, false);
    } else {
        edge__api_pipeline_answer(n, w->conn, w->mode, n->region, w->sq.key, w->resp.data, w->resp.len, w->start_ns);
    }
}

static void answer_timeout(struct waiter *w)
{
    struct edge_node *n = w->l->node;
    char msg[256];
    if (edge_http_conn_is_closed(w->conn) || w->l->stopping) return;
    if (w->kind == WAIT_BOOKMARK && w->ws != NULL) {
        /* A WebSocket stream cannot be sent to another region: the client (or the door)
         * decides what to do. */
        snprintf(msg, sizeof(msg), "this region has not yet applied %s:%llu (waited %llu ms)", w->origin,
                 (unsigned long long)w->sq.key, (unsigned long long)n->cfg.bookmark_timeout_ms);
        struct edge_buf b;
        edge_buf_init(&b, 4096);
        hrana_write_response_error(&b, w->request_id, msg, "BOOKMARK_TIMEOUT");
        if (!w->ws->closed) edge_http_ws_send(w->conn, 1, b.data, b.len);
        edge_buf_free(&b);
        edge__api_observe(n, EP_WS, w->start_ns, true);
    } else if (w->kind == WAIT_BOOKMARK && w->first_wait) {
        /* Plan again with the wait over: sent on to a region known to have the write, or
         * parked for the rest of the bookmark timeout (http.c). */
        w->l->bm_expired = w->req;
        edge__api_pipeline_handle(w->l, w->conn, w->req, w->version, w->access);
        w->l->bm_expired = NULL;
    } else if (w->kind == WAIT_BOOKMARK) {
        snprintf(msg, sizeof(msg), "this region has not yet applied %s:%llu (waited %llu ms)", w->origin,
                 (unsigned long long)w->sq.key, (unsigned long long)n->cfg.bookmark_timeout_ms);
        edge__api_observe(n, EP_PIPELINE, w->start_ns, true);
        edge_http_respond_error(w->conn, 504, "BOOKMARK_TIMEOUT", msg);
    } else if (w->kind == WAIT_REACHABLE) {
        snprintf(msg, sizeof(msg), "not every reachable region acknowledged %s:%llu in time", n->region,
                 (unsigned long long)w->sq.key);
        edge__api_observe(n, EP_CRDT, w->start_ns, true);
        edge_http_respond_error(w->conn, 504, "CRDT_SYNC_TIMEOUT", msg);
    } else if (w->ws != NULL) {
        snprintf(msg, sizeof(msg), "committed on the primary as %s:%llu but a majority did not confirm it in time",
                 n->region, (unsigned long long)w->sq.key);
        struct edge_buf b;
        edge_buf_init(&b, 4096);
        hrana_write_response_error(&b, w->request_id, msg, "STRONG_TIMEOUT");
        if (!w->ws->closed) edge_http_ws_send(w->conn, 1, b.data, b.len);
        edge_buf_free(&b);
        edge__api_observe(n, EP_WS, w->start_ns, true);
    } else {
        snprintf(msg, sizeof(msg),
                 "the write committed on the primary as %s:%llu but a majority of regions did not confirm it "
                 "within %llu ms",
                 n->region, (unsigned long long)w->sq.key, (unsigned long long)n->cfg.strong_timeout_ms);
        edge__api_observe(n, EP_PIPELINE, w->start_ns, true);
        edge_http_respond_error(w->conn, 504, "STRONG_TIMEOUT", msg);
    }
}

/* Answer a batch taken out of the heaps, in the order it was collected. */
static void answer_all(struct waiter *list, bool timeout)
{
    while (list != NULL) {
        struct waiter *next = list->next;
        if (timeout) {
            answer_timeout(list);
        } else {
            answer_ready(list);
        }
        waiter_free(list);
        list = next;
    }
}

static void on_deadline(uv_timer_t *t)
{
    struct edge__api_waits *ws = t->data;
    ws->timer_due = 0;
    uint64_t now = mono_ms();
    struct waiter *head = NULL, **tail = &head;
    struct hnode *top;
    while ((top = heap_top(&ws->by_deadline)) != NULL && top->key <= now) {
        struct waiter *w = DL_WAITER(top);
        detach(ws, w);
        w->next = NULL;
        *tail = w;
        tail = &w->next;
    }
    if (head == NULL && (top = heap_top(&ws->by_deadline)) != NULL) {
        /* The loop's clock ran a little ahead of ours: come back at the deadline. */
        ws->timer_due = top->key;
        uv_timer_start(&ws->timer, on_deadline, top->key - now, 0);
        return;
    }
    answer_all(head, true);
    arm(ws);
}

static void on_closed_conn(void *ud, struct edge_http_conn *c)
{
    (void)c;
    struct waiter *w = ud;
    struct edge__api_waits *ws = w->l->waits;
    /* The close watcher is already cleared; detach clears it again, harmlessly. */
    detach(ws, w);
    waiter_free(w);
    arm(ws);
}

void edge__api_wait_wake(struct loop *l)
{
    struct edge__api_waits *ws = l->waits;
    if (ws == NULL || ws->closing || ws->by_deadline.n == 0) return;
    struct edge_node *n = l->node;
    struct waiter *head = NULL, **tail = &head;
    struct hnode *top;
    if (ws->majority.n > 0) {
        uint64_t held = edge_repl_majority_seq(&n->repl);
        while ((top = heap_top(&ws->majority)) != NULL && top->key <= held) {
            struct waiter *w = SQ_WAITER(top);
            detach(ws, w);
            w->next = NULL;
            *tail = w;
            tail = &w->next;
        }
    }
    if (ws->reachable.n > 0) {
        uint64_t held = edge_repl_reachable_seq(&n->repl);
        while ((top = heap_top(&ws->reachable)) != NULL && top->key <= held) {
            struct waiter *w = SQ_WAITER(top);
            detach(ws, w);
            w->next = NULL;
            *tail = w;
            tail = &w->next;
        }
    }
    if (ws->n_origins > 0) {
        struct edge_vclock vv;
        edge_vclock_init(&vv);
        edge_repl_state_vv(&n->repl, &vv);
        for (size_t i = 0; i < ws->n_origins;) {
            struct origin_q *q = &ws->origins[i];
            uint64_t have = edge_vclock_get(&vv, q->origin);
            top = heap_top(&q->by_seq);
            if (top != NULL && top->key <= have) {
                struct waiter *w = SQ_WAITER(top);
                detach(ws, w); /* may move another origin into slot i */
                w->next = NULL;
                *tail = w;
                tail = &w->next;
                continue;
            }
            i++;
        }
        edge_vclock_close(&vv);
    }
    answer_all(head, false);
    arm(ws);
}

int edge__api_wait_init(struct loop *l)
{
    struct edge__api_waits *ws = edge_calloc(1, sizeof(*ws));
    if (ws == NULL) return EDGE_ENOMEM;
    ws->l = l;
    uv_timer_init(&l->loop, &ws->timer);
    ws->timer.data = ws;
    l->waits = ws;
    return EDGE_OK;
}

static void waits_closed(uv_handle_t *h)
{
    struct edge__api_waits *ws = h->data;
    edge_free(ws->by_deadline.v);
    edge_free(ws->majority.v);
    edge_free(ws->reachable.v);
    for (size_t i = 0; i < ws->n_origins; i++) edge_free(ws->origins[i].by_seq.v);
    edge_free(ws->origins);
    edge_free(ws);
}

void edge__api_wait_stop(struct loop *l)
{
    struct edge__api_waits *ws = l->waits;
    if (ws == NULL) return;
    l->waits = NULL;
    ws->closing = true;
    /* The node is stopping: nobody is answered (as when a connection closes). */
    struct hnode *top;
    while ((top = heap_top(&ws->by_deadline)) != NULL) {
        struct waiter *w = DL_WAITER(top);
        detach(ws, w);
        waiter_free(w);
    }
    uv_close((uv_handle_t *)&ws->timer, waits_closed);
}

static struct waiter *waiter_new(struct loop *l, struct edge_http_conn *c, enum wait_kind kind, uint64_t timeout_ms)
{
    struct waiter *w = edge_calloc(1, sizeof(*w));
    if (w == NULL) return NULL;
    w->l = l;
    w->conn = c;
    edge_http_conn_ref(c);
    w->kind = kind;
    w->dl.key = mono_ms() + timeout_ms;
    edge_buf_init(&w->resp, (size_t)1 << 31);
    return w;
}

/* Put w into the heaps and watch its connection. EDGE_ENOMEM leaves it out of all. */
static int park(struct edge__api_waits *ws, struct waiter *w)
{
    int rv = EDGE_ENOMEM;
    struct heap *h = w->kind == WAIT_REACHABLE ? &ws->reachable : &ws->majority;
    if (w->kind == WAIT_BOOKMARK) {
        struct origin_q *q = origin_find(ws, w->origin, NULL);
        if (q == NULL) {
            if (ws->n_origins == ws->cap_origins) {
                size_t cap = ws->cap_origins ? ws->cap_origins * 2 : 4;
                struct origin_q *v = edge_realloc(ws->origins, cap * sizeof(*v));
                if (v == NULL) goto out;
                ws->origins = v;
                ws->cap_origins = cap;
            }
            q = &ws->origins[ws->n_origins++];
            memset(q, 0, sizeof(*q));
            snprintf(q->origin, sizeof(q->origin), "%s", w->origin);
        }
        h = &q->by_seq;
    }
    if (heap_push(h, &w->sq) != EDGE_OK) goto out;
    if (heap_push(&ws->by_deadline, &w->dl) != EDGE_OK) {
        heap_remove(h, &w->sq);
        goto out;
    }
    edge_http_conn_watch_close(w->conn, on_closed_conn, w);
    atomic_fetch_add(&ws->l->node->m.waiting[w->kind], 1);
    arm(ws);
    rv = EDGE_OK;
out:
    if (rv != EDGE_OK && w->kind == WAIT_BOOKMARK) {
        /* Do not keep an origin's queue that nobody waits in. */
        size_t idx = 0;
        struct origin_q *q = origin_find(ws, w->origin, &idx);
        if (q != NULL && q->by_seq.n == 0) {
            edge_free(q->by_seq.v);
            ws->origins[idx] = ws->origins[--ws->n_origins];
        }
    }
    return rv;
}

/* Is a majority already there? Else park; wakes answer it later. */
static bool majority_now(struct edge_node *n, uint64_t seq)
{
    return edge_repl_majority_seq(&n->repl) >= seq;
}

void edge__api_wait_majority(struct loop *l, struct edge_http_conn *c, uint64_t seq, struct edge_buf *resp, int mode,
                             uint64_t start_ns)
{
    struct edge_node *n = l->node;
    if (edge_http_conn_is_closed(c) || l->waits == NULL) return; /* nobody to answer */
    if (majority_now(n, seq)) {
        edge__api_pipeline_answer(n, c, mode, n->region, seq, resp->data ? resp->data : "", resp->len, start_ns);
        return;
    }
    struct waiter *w = waiter_new(l, c, WAIT_MAJORITY, n->cfg.strong_timeout_ms);
    if (w == NULL) {
        edge_http_respond_error(c, 503, "INTERNAL", "out of memory");
        return;
    }
    w->sq.key = seq;
    w->mode = mode;
    w->start_ns = start_ns;
    edge_buf_append(&w->resp, resp->data ? resp->data : "", resp->len);
    if (park(l->waits, w) != EDGE_OK) {
        waiter_free(w);
        edge_http_respond_error(c, 503, "INTERNAL", "out of memory");
    }
}

/* Park a WebSocket answer of a strong write until a majority holds its entry; the
 * waiter takes over the unit's session reference and busy flag. False: answer now. */
bool edge__api_wait_majority_ws(struct unit *u, struct ws_session *s, uint64_t seq)
{
    struct edge_node *n = u->loop->node;
    struct loop *l = u->loop;
    if (s->closed || edge_http_conn_is_closed(s->conn) || l->waits == NULL || majority_now(n, seq)) return false;
    struct waiter *w = waiter_new(l, s->conn, WAIT_MAJORITY, n->cfg.strong_timeout_ms);
    if (w == NULL) return false;
    w->sq.key = seq;
    w->request_id = u->request_id;
    w->start_ns = u->start_ns;
    edge_buf_append(&w->resp, u->out.data ? u->out.data : "", u->out.len);
    if (park(l->waits, w) != EDGE_OK) {
        waiter_free(w); /* w->ws is still NULL: the session stays the caller's */
        return false;
    }
    w->ws = s;
    return true;
}

int edge__api_wait_bookmark_ws(struct ws_session *s, json_t *msg, int64_t request_id, const char *bm)
{
    struct loop *l = s->loop;
    struct edge_node *n = l->node;
    struct edge_vclock vv;
    edge_vclock_init(&vv);
    int prv = edge_rt_bookmark_parse(bm, strlen(bm), &vv);
    char origin[EDGE_VCLOCK_REGION_MAX + 1] = "";
    uint64_t seq = 0;
    for (size_t i = 0; prv == EDGE_OK && i < vv.n_entries && seq == 0; i++) {
        if (!edge_repl_state_covers(&n->repl, vv.entries[i].region, vv.entries[i].n)) {
            snprintf(origin, sizeof(origin), "%s", vv.entries[i].region);
            seq = vv.entries[i].n;
        }
    }
    edge_vclock_close(&vv);
    if (prv != EDGE_OK) return prv == EDGE_ENOMEM ? EDGE_ENOMEM : EDGE_EINVAL;
    if (!n->repl.cluster || seq == 0 || l->waits == NULL || s->closed) return EDGE_OK;
    struct waiter *w = waiter_new(l, s->conn, WAIT_BOOKMARK, n->cfg.bookmark_timeout_ms);
    if (w == NULL) return EDGE_ENOMEM;
    snprintf(w->origin, sizeof(w->origin), "%s", origin);
    w->sq.key = seq;
    w->request_id = request_id;
    w->start_ns = uv_hrtime();
    if (park(l->waits, w) != EDGE_OK) {
        waiter_free(w); /* w->ws is still NULL: the session is untouched */
        return EDGE_ENOMEM;
    }
    w->ws_msg = json_incref(msg);
    w->ws = s;
    s->busy = true;
    s->refs++;
    return EDGE_EAGAIN;
}

void edge__api_wait_reachable(struct loop *l, struct edge_http_conn *c, uint64_t seq, uint64_t timeout_ms,
                              uint64_t start_ns)
{
    struct edge_node *n = l->node;
    if (edge_http_conn_is_closed(c) || l->waits == NULL) return; /* nobody to answer */
    if (edge_repl_reachable_seq(&n->repl) >= seq) {
        edge__api_crdt_sync_answer(n, c, seq, start_ns);
        return;
    }
    struct waiter *w = waiter_new(l, c, WAIT_REACHABLE, timeout_ms);
    if (w == NULL) {
        edge_http_respond_error(c, 503, "INTERNAL", "out of memory");
        return;
    }
    w->sq.key = seq;
    w->start_ns = start_ns;
    if (park(l->waits, w) != EDGE_OK) {
        waiter_free(w);
        edge_http_respond_error(c, 503, "INTERNAL", "out of memory");
    }
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

static void park_bookmark(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, int version,
                          enum hrana_access access, const char *origin, uint64_t seq, uint64_t wait_ms, bool first)
{
    struct edge_node *n = l->node;
    struct waiter *w = waiter_new(l, c, WAIT_BOOKMARK, wait_ms);
    if (w == NULL) {
        edge__api_respond_error(n, c, req, EP_PIPELINE, 503, "INTERNAL", "out of memory");
        return;
    }
    snprintf(w->origin, sizeof(w->origin), "%s", origin);
    w->sq.key = seq;
    w->req = req;
    w->version = version;
    w->access = access;
    w->first_wait = first;
    w->start_ns = req->start_ns;
    if (park(l->waits, w) != EDGE_OK) {
        waiter_free(w);
        edge__api_respond_error(n, c, req, EP_PIPELINE, 503, "INTERNAL", "out of memory");
    }
}

/* The first origin of a vector bookmark this region has not applied: false when it has
 * them all (or the text is not a vector bookmark). */
static bool vector_first_missing(struct edge_node *n, const char *bm, char origin[EDGE_VCLOCK_REGION_MAX + 1],
                                 uint64_t *seq)
{
    struct edge_vclock vv;
    edge_vclock_init(&vv);
    bool found = false;
    if (edge_rt_bookmark_parse(bm, strlen(bm), &vv) == EDGE_OK) {
        for (size_t i = 0; i < vv.n_entries && !found; i++) {
            if (!edge_repl_state_covers(&n->repl, vv.entries[i].region, vv.entries[i].n)) {
                snprintf(origin, EDGE_VCLOCK_REGION_MAX + 1, "%s", vv.entries[i].region);
                *seq = vv.entries[i].n;
                found = true;
            }
        }
    }
    edge_vclock_close(&vv);
    return found;
}

void edge__api_wait_bookmark_rest(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, int version,
                                  enum hrana_access access)
{
    struct edge_node *n = l->node;
    const char *bm = edge_http_header(req, "x-edge-bookmark");
    char origin[EDGE_VCLOCK_REGION_MAX + 1];
    uint64_t seq = 0;
    bool missing = bm != NULL && (strchr(bm, ',') != NULL ? vector_first_missing(n, bm, origin, &seq)
                                                          : edge__api_bookmark_parse(bm, origin, &seq));
    if (!missing) {
        /* every origin of a vector arrived meanwhile (a single one was checked before) */
        edge__api_pipeline_handle(l, c, req, version, access);
        return;
    }
    if (edge_http_conn_is_closed(c) || l->waits == NULL) return;
    uint64_t waited = mono_ms() - req->start_ns / 1000000u;
    if (waited >= n->cfg.bookmark_timeout_ms) {
        char msg[256];
        snprintf(msg, sizeof(msg), "this region has not yet applied %s:%llu (waited %llu ms) and no region known "
                 "to have it could take the read", origin, (unsigned long long)seq,
                 (unsigned long long)n->cfg.bookmark_timeout_ms);
        edge__api_respond_error(n, c, req, EP_PIPELINE, 504, "BOOKMARK_TIMEOUT", msg);
        return;
    }
    park_bookmark(l, c, req, version, access, origin, seq, n->cfg.bookmark_timeout_ms - waited, false);
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
    if (strchr(bm, ',') != NULL) {
        /* The vector form of the real-time feed (REGION:SEQ,REGION:SEQ...): wait for the
         * first origin not yet covered; answer_ready checks the rest. */
        struct edge_vclock vv;
        edge_vclock_init(&vv);
        int prv = edge_rt_bookmark_parse(bm, strlen(bm), &vv);
        edge_vclock_close(&vv);
        if (prv != EDGE_OK) {
            edge__api_respond_error(n, c, req, EP_PIPELINE, 400, "BOOKMARK_INVALID",
                                    "X-Edge-Bookmark must be REGION:SEQ or REGION:SEQ,REGION:SEQ,...");
            return true;
        }
        if (!vector_first_missing(n, bm, origin, &seq)) return false;
    } else if (!edge__api_bookmark_parse(bm, origin, &seq)) {
        edge__api_respond_error(n, c, req, EP_PIPELINE, 400, "BOOKMARK_INVALID", "X-Edge-Bookmark must be REGION:SEQ");
        return true;
    }
    if (edge_repl_state_covers(&n->repl, origin, seq)) return false;
    if (edge_http_conn_is_closed(c) || l->waits == NULL) return true; /* nobody to answer */
    /* A read sent here by another region waits the whole timeout: it is never sent on twice. */
    bool first = edge_http_header(req, "x-edge-forwarded") == NULL;
    uint64_t wait = n->cfg.bookmark_timeout_ms;
    if (first && (uint64_t)n->bookmark_wait_ms < wait) wait = (uint64_t)n->bookmark_wait_ms;
    park_bookmark(l, c, req, version, access, origin, seq, wait, first);
    return true;
}
