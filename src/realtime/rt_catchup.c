/* SPDX-License-Identifier: MIT */
/* The real-time engine (see rt.h): catching up from a bookmark. A subscription in the past
 * reads the log on its loop's read connection, a bounded batch per turn, paced by its
 * reader, then goes live; a gap (compacted entries) ends it with resync_required. */
#include "realtime/rt_int.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"
#include "repl/feed.h"
#include "store/store.h"

static void idle_cb(uv_idle_t *h);

void edge__rt_catchup_count(struct rt_loop *rl, int d)
{
    rl->n_catchup += d;
    if (rl->n_catchup > 0 && !rl->idle_on) {
        uv_idle_start(&rl->idle, idle_cb);
        rl->idle_on = true;
    } else if (rl->n_catchup == 0 && rl->idle_on) {
        uv_idle_stop(&rl->idle);
        rl->idle_on = false;
    }
}

/* The log no longer holds what sub needs: tell it where to start over, drop it. */
void edge__rt_sub_resync(struct rt_sub *sub)
{
    struct rt_session *s = sub->s;
    struct edge_buf b;
    edge_buf_init(&b, 1 << 16);
    if (s->sse) edge_buf_puts(&b, "event: resync_required\ndata: ");
    edge_buf_printf(&b, "{\"type\":\"resync_required\",\"sub\":%lld,\"bookmark\":\"", (long long)sub->id);
    edge_rt_bookmark_format(&s->rl->lvv, &b);
    edge_buf_puts(&b, "\"}");
    if (s->sse) edge_buf_puts(&b, "\n\n");
    edge__rt_session_flush(s);
    edge__rt_send_buf(s, &b);
    edge_buf_free(&b);
    atomic_fetch_add(&s->rt->m.closed_resync, 1);
    edge__rt_sub_remove(sub);
    if (s->sse) edge__rt_session_close(s, 1000, "resync required");
}

void edge__rt_send_ready(struct rt_sub *sub)
{
    struct rt_session *s = sub->s;
    struct edge_buf b;
    edge_buf_init(&b, 1 << 16);
    if (s->sse) edge_buf_puts(&b, "event: ready\ndata: ");
    edge_buf_printf(&b, "{\"type\":\"ready\",\"sub\":%lld,\"bookmark\":\"", (long long)sub->id);
    edge__rt_sub_position(sub, &b);
    edge_buf_puts(&b, "\"}");
    if (s->sse) edge_buf_puts(&b, "\n\n");
    edge__rt_send_buf(s, &b);
    edge_buf_free(&b);
}

/* A catching-up sub has reached the loop's position: it follows the live entries now. */
static void sub_go_live(struct rt_sub *sub)
{
    struct rt_loop *rl = sub->s->rl;
    edge__rt_catchup_count(rl, -1);
    sub->state = edge__rt_vv_le(&sub->pos, &rl->lvv) ? SUB_LIVE : SUB_AHEAD;
    edge__rt_session_flush(sub->s);
    edge__rt_send_ready(sub);
}

struct catchup_ctx {
    struct rt_sub *sub;
};

static void catchup_entry(void *ud, const struct edge_feed_entry *fe)
{
    struct catchup_ctx *x = ud;
    struct rt_sub *sub = x->sub;
    /* the bookmark after this entry, for this subscriber */
    struct edge_vclock after;
    edge_vclock_init(&after);
    edge_vclock_copy(&after, &sub->pos);
    edge_vclock_set(&after, fe->origin, fe->seq);
    struct rt_entry *e = edge__rt_entry_build(fe, &after);
    edge_vclock_close(&after);
    if (e == NULL) return;
    for (size_t i = 0; i < e->n_ops; i++) {
        if (edge__rt_sub_matches(sub, e, &e->ops[i])) edge__rt_queue_event(sub->s, sub, e, &e->ops[i], e->arena + e->bm_off, e->bm_len);
    }
    edge__rt_entry_unref(e);
}

struct edge_store_conn *edge__rt_loop_rconn(struct rt_loop *rl)
{
    if (rl->rconn == NULL) {
        char err[256];
        if (edge_store_open(rl->rt->db_path, EDGE_STORE_READ, false, 5000, &rl->rconn, err, sizeof(err)) != EDGE_OK) {
            EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_API, "realtime: cannot open a read connection: %s", err);
            rl->rconn = NULL;
        }
    }
    return rl->rconn;
}

/* One bounded step of a catching-up subscription. */
void edge__rt_sub_catchup_step(struct rt_sub *sub)
{
    struct rt_session *s = sub->s;
    struct rt_loop *rl = s->rl;
    /* The log is this subscriber's queue: read on only as fast as it reads. */
    if (edge__rt_session_unsent(s) > s->rt->lim.queue_bytes / 2) return;
    if (edge__rt_vv_le(&rl->lvv, &sub->pos)) {
        sub_go_live(sub);
        return;
    }
    struct edge_store_conn *rc = edge__rt_loop_rconn(rl);
    if (rc == NULL) return;
    bool gap = false, more = false;
    struct catchup_ctx x = {sub};
    int rv = edge_feed_read(edge_store_db(rc), &sub->pos, &rl->lvv, (size_t)s->rt->lim.backlog_batch, catchup_entry,
                            &x, &gap, &more);
    edge__rt_session_flush(s);
    if (rv != EDGE_OK) return; /* busy or transient: the next turn tries again */
    if (gap) {
        edge__rt_sub_resync(sub);
        return;
    }
    if (!more && edge__rt_vv_le(&rl->lvv, &sub->pos)) sub_go_live(sub);
}

static void idle_cb(uv_idle_t *h)
{
    struct rt_loop *rl = h->data;
    for (struct rt_session *s = rl->sessions; s != NULL;) {
        struct rt_session *next = s->next;
        for (struct rt_sub *sub = s->subs; sub != NULL && !s->closed;) {
            struct rt_sub *sn = sub->next;
            if (sub->state == SUB_CATCHUP) edge__rt_sub_catchup_step(sub);
            sub = sn;
        }
        s = next;
    }
}
