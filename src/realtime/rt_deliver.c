/* SPDX-License-Identifier: MIT */
/* The real-time engine (see rt.h): delivery. Entries from the feed are handed to the loops
 * with subscribers, matched against each subscription's filters, queued in one frame per
 * connection and turn, and a connection whose unsent output passes realtime.queue_bytes
 * is closed as a slow consumer. */
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
#include "repl/trace.h"
#include "store/store.h"

/* ---------------------------------------------------------------------------------- */
/* Sending                                                                            */
/* ---------------------------------------------------------------------------------- */

void edge__rt_send_text(struct rt_session *s, const char *p, size_t n)
{
    if (s->closed) return;
    struct edge_rt *rt = s->rt;
    if (s->sse) {
        edge_http_stream_write(s->c, p, n);
    } else {
        edge_http_ws_send(s->c, 1, p, n);
    }
    atomic_fetch_add(&rt->m.frames, 1);
    atomic_fetch_add(&rt->m.bytes_out, n);
}

void edge__rt_send_buf(struct rt_session *s, struct edge_buf *b)
{
    edge__rt_send_text(s, b->data ? b->data : "", b->len);
}

/* An error frame: {"type":"error","code","message","id"?} (SSE: an "error" event). */
void edge__rt_send_error(struct rt_session *s, const char *code, const char *msg, json_t *id)
{
    struct edge_buf b;
    edge_buf_init(&b, 1 << 16);
    if (s->sse) edge_buf_puts(&b, "event: error\ndata: ");
    edge_buf_printf(&b, "{\"type\":\"error\",\"code\":\"%s\",\"message\":", code);
    edge_buf_json_cstr(&b, msg);
    if (id != NULL && json_is_integer(id)) edge_buf_printf(&b, ",\"id\":%lld", (long long)json_integer_value(id));
    edge_buf_putc(&b, '}');
    if (s->sse) edge_buf_puts(&b, "\n\n");
    edge__rt_send_buf(s, &b);
    edge_buf_free(&b);
}

/* The position of sub: what it has been sent (a live one has the loop's). */
void edge__rt_sub_position(const struct rt_sub *sub, struct edge_buf *out)
{
    if (sub->state == SUB_LIVE) {
        edge_rt_bookmark_format(&sub->s->rl->lvv, out);
    } else if (sub->state == SUB_AHEAD) {
        struct edge_vclock m;
        edge_vclock_init(&m);
        edge_vclock_copy(&m, &sub->pos);
        edge_vclock_merge(&m, &sub->s->rl->lvv);
        edge_rt_bookmark_format(&m, out);
        edge_vclock_close(&m);
    } else {
        edge_rt_bookmark_format(&sub->pos, out);
    }
}

/* A WebSocket frame of this turn starts with the batch header, so that several events
 * go out without copying them into another buffer; one event alone is sent without it. */
static const char BATCH_HEAD[] = "{\"type\":\"batch\",\"events\":[";
#define BATCH_HEAD_LEN (sizeof(BATCH_HEAD) - 1)

void edge__rt_frame_next(struct rt_session *s)
{
    if (s->sse) return;
    if (s->out_n == 0) edge_buf_append(&s->out, BATCH_HEAD, BATCH_HEAD_LEN);
    else edge_buf_putc(&s->out, ',');
}

/* Queue one change event for sub in the session's frame of this turn. */
void edge__rt_queue_event(struct rt_session *s, const struct rt_sub *sub, const struct rt_entry *e, const struct rt_op *o,
                        const char *bm, size_t bm_len)
{
    struct edge_buf *b = &s->out;
    if (s->sse) {
        edge_buf_puts(b, "id: ");
        edge_buf_append(b, bm, bm_len);
        edge_buf_puts(b, "\ndata: ");
    }
    edge__rt_frame_next(s);
    edge_buf_printf(b, "{\"type\":\"change\",\"sub\":%lld,", (long long)sub->id);
    edge_buf_append(b, e->arena + o->frag_off, o->frag_len);
    edge_buf_puts(b, ",\"bookmark\":\"");
    edge_buf_append(b, bm, bm_len);
    edge_buf_puts(b, "\"}");
    if (s->sse) edge_buf_puts(b, "\n\n");
    s->out_n++;
    atomic_fetch_add(&s->rt->m.deliveries, 1);
}

/* Send the frame of this turn: the one event alone, or a batch. */
void edge__rt_session_flush(struct rt_session *s)
{
    if (s->out_n == 0) return;
    if (s->sse) {
        edge__rt_send_buf(s, &s->out);
    } else if (s->out.len < BATCH_HEAD_LEN) {
        /* an append failed (out of memory): nothing sensible to send */
    } else if (s->out_n == 1) {
        edge__rt_send_text(s, s->out.data + BATCH_HEAD_LEN, s->out.len - BATCH_HEAD_LEN);
    } else if (edge_buf_puts(&s->out, "]}") == EDGE_OK) {
        edge__rt_send_buf(s, &s->out);
    }
    /* An idle subscriber keeps no frame memory: a big turn's buffer is given back. */
    if (s->out.cap > 64 * 1024) {
        size_t max = s->out.max;
        edge_buf_free(&s->out);
        edge_buf_init(&s->out, max);
    } else {
        edge_buf_reset(&s->out);
    }
    s->out_n = 0;
}

size_t edge__rt_session_unsent(const struct rt_session *s)
{
    return s->closed ? 0 : edge_http_conn_unsent(s->c);
}

/* ---------------------------------------------------------------------------------- */
/* Filters                                                                            */
/* ---------------------------------------------------------------------------------- */

bool edge__rt_sub_matches(const struct rt_sub *sub, const struct rt_entry *e, const struct rt_op *o)
{
    const char *table = e->arena + o->table_off;
    bool t = false;
    for (int i = 0; i < sub->n_tables && !t; i++) {
        t = strlen(sub->tables[i]) == o->table_len && strncasecmp(sub->tables[i], table, o->table_len) == 0;
    }
    if (!t) return false;
    if (sub->n_keys > 0) {
        bool k = false;
        for (int i = 0; i < sub->n_keys && !k; i++) {
            k = strlen(sub->keys[i]) == o->pk_len && memcmp(sub->keys[i], e->arena + o->pk_off, o->pk_len) == 0;
        }
        if (!k) return false;
    }
    for (int i = 0; i < sub->n_where; i++) {
        const struct rt_col *c = NULL;
        size_t cl = strlen(sub->where[i].col);
        for (uint32_t j = 0; j < o->ncols; j++) {
            const struct rt_col *x = &e->cols[o->col0 + j];
            if (x->name_len == cl && strncasecmp(e->arena + x->name_off, sub->where[i].col, cl) == 0) {
                c = x;
                break;
            }
        }
        if (c == NULL) {
            /* A delete carries only its key: it goes to every subscription whose filter
             * names other columns (the row may have matched). */
            if (o->kind == EDGE_FEED_DELETE) continue;
            return false;
        }
        size_t vl = strlen(sub->where[i].val);
        if (c->val_len != vl || memcmp(e->arena + c->val_off, sub->where[i].val, vl) != 0) return false;
    }
    return true;
}

/* ---------------------------------------------------------------------------------- */
/* Live entries on a loop                                                             */
/* ---------------------------------------------------------------------------------- */

static void slow_consumer(struct rt_session *s)
{
    for (struct rt_sub *sub = s->subs; sub != NULL; sub = sub->next) {
        struct edge_buf b;
        edge_buf_init(&b, 1 << 16);
        if (s->sse) edge_buf_puts(&b, "event: error\ndata: ");
        edge_buf_printf(&b, "{\"type\":\"error\",\"code\":\"SLOW_CONSUMER\",\"sub\":%lld,\"message\":\"the subscriber "
                            "fell behind by more than realtime.queue_bytes; resume from the bookmark\",\"bookmark\":\"",
                        (long long)sub->id);
        edge__rt_sub_position(sub, &b);
        edge_buf_puts(&b, "\"}");
        if (s->sse) edge_buf_puts(&b, "\n\n");
        edge__rt_send_buf(s, &b);
        edge_buf_free(&b);
    }
    atomic_fetch_add(&s->rt->m.closed_slow, 1);
    edge__rt_session_close(s, 4008, "slow consumer");
}

static void deliver_change(struct rt_loop *rl, struct rt_entry *e)
{
    if (e->seq <= edge_vclock_get(&rl->lvv, e->origin)) return; /* before this loop's start */
    edge_vclock_set(&rl->lvv, e->origin, e->seq);
    for (struct rt_session *s = rl->sessions; s != NULL; s = s->next) {
        if (s->closed) continue;
        for (struct rt_sub *sub = s->subs; sub != NULL; sub = sub->next) {
            if (sub->state == SUB_CATCHUP) continue; /* it reads this from the log */
            const char *bm = e->arena + e->bm_off;
            size_t bml = e->bm_len;
            struct edge_buf own;
            edge_buf_init(&own, 1 << 16);
            if (sub->state == SUB_AHEAD) {
                if (e->seq <= edge_vclock_get(&sub->pos, e->origin)) continue; /* it has it */
                edge_vclock_set(&sub->pos, e->origin, e->seq);
                edge__rt_sub_position(sub, &own);
                bm = own.data ? own.data : "";
                bml = own.len;
            }
            for (size_t i = 0; i < e->n_ops; i++) {
                if (edge__rt_sub_matches(sub, e, &e->ops[i])) edge__rt_queue_event(s, sub, e, &e->ops[i], bm, bml);
            }
            edge_buf_free(&own);
            if (sub->state == SUB_AHEAD && edge__rt_vv_le(&sub->pos, &rl->lvv)) sub->state = SUB_LIVE;
        }
    }
}

static void loop_task(struct edge_task *t)
{
    struct rt_loop *rl = (struct rt_loop *)(void *)((char *)t - offsetof(struct rt_loop, task));
    pthread_mutex_lock(&rl->mu);
    struct rt_entry **list = rl->pend;
    size_t n = rl->n_pend;
    rl->pend = NULL;
    rl->n_pend = rl->cap_pend = 0;
    rl->posted = false;
    pthread_mutex_unlock(&rl->mu);
    uint64_t t_loop = edge_repl_trace_on() ? edge_repl_trace_now_ns() : 0;
    for (size_t i = 0; i < n; i++) {
        struct rt_entry *e = list[i];
        if (e->type == ENT_CHANGE) {
            deliver_change(rl, e);
        } else if (e->type == ENT_BROADCAST) {
            edge__rt_deliver_broadcast(rl, e);
        } else {
            for (struct rt_session *s = rl->sessions; s != NULL; s = s->next) {
                for (struct rt_sub *sub = s->subs; sub != NULL && !s->closed;) {
                    struct rt_sub *sn = sub->next;
                    edge__rt_sub_resync(sub);
                    sub = sn;
                }
            }
        }
    }
    size_t limit = rl->rt->lim.queue_bytes;
    for (struct rt_session *s = rl->sessions; s != NULL;) {
        struct rt_session *next = s->next;
        edge__rt_session_flush(s);
        if (!s->closed && edge__rt_session_unsent(s) > limit) {
            slow_consumer(s);
        } else if (!s->closed && !s->sse) {
            /* checked first: the turn's frame counts as unsent, as it always has; then it
             * goes out now rather than after every other subscriber's turn (net/ws.c) */
            edge_http_ws_flush(s->c);
        }
        s = next;
    }
    /* Let go of the entries once their frames are written, so the trace can name them. */
    for (size_t i = 0; i < n; i++) {
        if (t_loop != 0 && list[i]->type == ENT_CHANGE) {
            edge_repl_trace_at("loop", list[i]->origin, list[i]->seq, t_loop);
            edge_repl_trace_at("written", list[i]->origin, list[i]->seq, 0);
        }
        edge__rt_entry_unref(list[i]);
    }
    edge_free(list);
}

void edge__rt_loop_push(struct edge_rt *rt, struct rt_loop *rl, struct rt_entry *e)
{
    pthread_mutex_lock(&rl->mu);
    if (rl->n_pend == rl->cap_pend) {
        size_t nc = rl->cap_pend ? rl->cap_pend * 2 : 64;
        struct rt_entry **g = edge_realloc(rl->pend, nc * sizeof(*g));
        if (g == NULL) {
            pthread_mutex_unlock(&rl->mu);
            EDGE_LOG(EDGE_LOG_ERROR, EDGE_MOD_API, "realtime: out of memory queueing an entry");
            return;
        }
        rl->pend = g;
        rl->cap_pend = nc;
    }
    atomic_fetch_add(&e->refs, 1);
    rl->pend[rl->n_pend++] = e;
    bool post = !rl->posted;
    rl->posted = true;
    pthread_mutex_unlock(&rl->mu);
    if (post) {
        rl->task.run = loop_task;
        rt->host.post(rt->host.ud, rl->idx, &rl->task);
    }
}

/* Feed listener: committing thread, feed lock held. */
void edge__rt_on_feed_entry(void *ud, const struct edge_feed_entry *fe)
{
    struct edge_rt *rt = ud;
    atomic_fetch_add(&rt->m.entries_in, 1);
    pthread_mutex_lock(&rt->mu);
    edge_vclock_set(&rt->pos, fe->origin, fe->seq);
    if (rt->n_active > 0) {
        if (edge_repl_trace_on()) edge_repl_trace_at("feed", fe->origin, fe->seq, 0);
        struct rt_entry *e = edge__rt_entry_build(fe, &rt->pos);
        if (e == NULL) {
            EDGE_LOG(EDGE_LOG_ERROR, EDGE_MOD_API, "realtime: out of memory rendering %s:%llu", fe->origin,
                     (unsigned long long)fe->seq);
        }
        for (int i = 0; e != NULL && i < rt->host.n_loops; i++) {
            if (rt->loops[i].active) edge__rt_loop_push(rt, &rt->loops[i], e);
        }
        edge__rt_entry_unref(e);
    }
    pthread_mutex_unlock(&rt->mu);
}

void edge__rt_on_feed_reset(void *ud)
{
    struct edge_rt *rt = ud;
    struct rt_entry *e = edge_calloc(1, sizeof(*e));
    if (e == NULL) return;
    atomic_store(&e->refs, 1);
    e->type = ENT_RESET;
    pthread_mutex_lock(&rt->mu);
    for (int i = 0; i < rt->host.n_loops; i++) {
        if (rt->loops[i].active) edge__rt_loop_push(rt, &rt->loops[i], e);
    }
    pthread_mutex_unlock(&rt->mu);
    edge__rt_entry_unref(e);
}
