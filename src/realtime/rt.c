/* SPDX-License-Identifier: MIT */
/* The real-time engine (see rt.h): entries from the change feed, delivery, catch-up, life cycle. */
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

/* ---------------------------------------------------------------------------------- */
/* Bookmarks                                                                          */
/* ---------------------------------------------------------------------------------- */

int edge_rt_bookmark_format(const struct edge_vclock *vv, struct edge_buf *out)
{
    int rv = EDGE_OK;
    for (size_t i = 0; i < vv->n_entries && rv == EDGE_OK; i++) {
        rv = edge_buf_printf(out, "%s%s:%llu", i ? "," : "", vv->entries[i].region,
                             (unsigned long long)vv->entries[i].n);
    }
    return rv;
}

int edge_rt_bookmark_parse(const char *s, size_t len, struct edge_vclock *out)
{
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && s[j] != ',') j++;
        /* one pair s[i..j) */
        size_t colon = j;
        for (size_t k = j; k > i; k--) {
            if (s[k - 1] == ':') {
                colon = k - 1;
                break;
            }
        }
        if (colon == j || colon == i || colon - i > EDGE_VCLOCK_REGION_MAX || colon + 1 == j || j - colon > 21) {
            return EDGE_EINVAL;
        }
        char region[EDGE_VCLOCK_REGION_MAX + 1];
        memcpy(region, s + i, colon - i);
        region[colon - i] = '\0';
        uint64_t v = 0;
        for (size_t k = colon + 1; k < j; k++) {
            if (s[k] < '0' || s[k] > '9') return EDGE_EINVAL;
            uint64_t d = (uint64_t)(s[k] - '0');
            if (v > (UINT64_MAX - d) / 10) return EDGE_EINVAL;
            v = v * 10 + d;
        }
        if (!edge_vclock_region_valid(region) || edge_vclock_get(out, region) != 0) return EDGE_EINVAL;
        if (v > 0 && edge_vclock_set(out, region, v) != EDGE_OK) return EDGE_ENOMEM;
        i = j + 1;
        if (j + 1 == len && s[j] == ',') return EDGE_EINVAL; /* trailing comma */
    }
    return EDGE_OK;
}

/* pos covered by b (every counter of a at most b's)? */
static bool vv_le(const struct edge_vclock *a, const struct edge_vclock *b)
{
    for (size_t i = 0; i < a->n_entries; i++) {
        if (a->entries[i].n > edge_vclock_get(b, a->entries[i].region)) return false;
    }
    return true;
}

/* ---------------------------------------------------------------------------------- */
/* Entries                                                                            */
/* ---------------------------------------------------------------------------------- */

static void entry_unref(struct rt_entry *e)
{
    if (e == NULL || atomic_fetch_sub(&e->refs, 1) != 1) return;
    edge_free(e->arena);
    edge_free(e->ops);
    edge_free(e->cols);
    edge_free(e);
}

static const char *kind_name(int k)
{
    return k == EDGE_FEED_INSERT ? "insert" : k == EDGE_FEED_UPDATE ? "update" : k == EDGE_FEED_DELETE ? "delete" : "ddl";
}

static int put_conflict(struct edge_buf *b, const struct edge_feed_conflict *c)
{
    int rv = edge_buf_printf(b, ",\"conflict\":{\"resolved_for\":\"%s\",\"kind\":", c->this_won ? "this" : "other");
    if (rv == EDGE_OK) rv = edge_buf_json_cstr(b, c->kind ? c->kind : "row");
    if (rv == EDGE_OK) rv = edge_buf_puts(b, ",\"winner\":{\"origin\":");
    if (rv == EDGE_OK) rv = edge_buf_json_cstr(b, c->winner_origin);
    if (rv == EDGE_OK) {
        rv = edge_buf_printf(b, ",\"seq\":%llu,\"hlc\":\"%llu\"},\"loser\":{\"origin\":", (unsigned long long)c->winner_seq,
                             (unsigned long long)c->winner_hlc);
    }
    if (rv == EDGE_OK) rv = edge_buf_json_cstr(b, c->loser_origin);
    if (rv == EDGE_OK) {
        rv = edge_buf_printf(b, ",\"seq\":%llu,\"hlc\":\"%llu\",\"deleted\":%s,\"row\":", (unsigned long long)c->loser_seq,
                             (unsigned long long)c->loser_hlc, c->loser_deleted ? "true" : "false");
    }
    if (rv == EDGE_OK) rv = edge_repl_image_json(c->loser_image, c->loser_image_len, b);
    if (rv == EDGE_OK) rv = edge_buf_puts(b, "}}");
    return rv;
}

/* Only row changes are events: schema changes and /v1/crdt objects (EDGE_FEED_CRDT) are not. */
static bool row_op(int kind)
{
    return kind == EDGE_FEED_INSERT || kind == EDGE_FEED_UPDATE || kind == EDGE_FEED_DELETE;
}

/* Render a feed entry once: per op, its event fields and what filters look at. */
static struct rt_entry *entry_build(const struct edge_feed_entry *fe, const struct edge_vclock *after)
{
    struct rt_entry *e = edge_calloc(1, sizeof(*e));
    if (e == NULL) return NULL;
    atomic_store(&e->refs, 1);
    e->type = ENT_CHANGE;
    snprintf(e->origin, sizeof(e->origin), "%s", fe->origin);
    e->seq = fe->seq;
    size_t ncols = 0, nops = 0;
    for (size_t i = 0; i < fe->n_ops; i++) {
        if (!row_op(fe->ops[i].kind)) continue;
        nops++;
        ncols += (size_t)fe->ops[i].ncols;
    }
    e->ops = edge_calloc(nops ? nops : 1, sizeof(*e->ops));
    e->cols = edge_calloc(ncols ? ncols : 1, sizeof(*e->cols));
    struct edge_buf a;
    edge_buf_init(&a, (size_t)1 << 30);
    int rv = e->ops && e->cols ? EDGE_OK : EDGE_ENOMEM;
    size_t k = 0, cc = 0;
    for (size_t i = 0; i < fe->n_ops && rv == EDGE_OK; i++) {
        const struct edge_feed_op *op = &fe->ops[i];
        if (!row_op(op->kind)) continue;
        struct rt_op *o = &e->ops[k++];
        o->kind = op->kind;
        o->table_off = (uint32_t)a.len;
        o->table_len = (uint32_t)op->table_len;
        rv = edge_buf_append(&a, op->table, op->table_len);
        o->pk_off = (uint32_t)a.len;
        if (rv == EDGE_OK) rv = edge_feed_pk_json(op, &a);
        o->pk_len = (uint32_t)(a.len - o->pk_off);
        o->col0 = (uint32_t)cc;
        o->ncols = (uint32_t)op->ncols;
        for (int j = 0; j < op->ncols && rv == EDGE_OK; j++) {
            struct rt_col *c = &e->cols[cc++];
            c->name_off = (uint32_t)a.len;
            c->name_len = (uint32_t)op->cols[j].name_len;
            rv = edge_buf_append(&a, op->cols[j].name, op->cols[j].name_len);
            c->val_off = (uint32_t)a.len;
            if (rv == EDGE_OK) rv = edge_feed_value_json(op->cols[j].val, op->cols[j].val_len, &a);
            c->val_len = (uint32_t)(a.len - c->val_off);
            for (int p = 0; p < op->npk; p++) c->pk = c->pk || op->pk[p] == j;
        }
        o->frag_off = (uint32_t)a.len;
        if (rv == EDGE_OK) rv = edge_buf_puts(&a, "\"table\":");
        if (rv == EDGE_OK) rv = edge_buf_json_str(&a, op->table, op->table_len);
        if (rv == EDGE_OK) rv = edge_buf_printf(&a, ",\"op\":\"%s\",\"pk\":", kind_name(op->kind));
        if (rv == EDGE_OK) rv = edge_feed_pk_json(op, &a);
        if (rv == EDGE_OK) rv = edge_buf_puts(&a, ",\"row\":");
        if (rv == EDGE_OK) rv = op->kind == EDGE_FEED_DELETE ? edge_buf_puts(&a, "null") : edge_feed_row_json(op, &a);
        if (rv == EDGE_OK) rv = edge_buf_puts(&a, ",\"origin\":");
        if (rv == EDGE_OK) rv = edge_buf_json_cstr(&a, fe->origin);
        if (rv == EDGE_OK) {
            rv = edge_buf_printf(&a, ",\"seq\":%llu,\"hlc\":\"%llu\",\"version\":\"%s:%llu\"", (unsigned long long)fe->seq,
                                 (unsigned long long)fe->hlc, fe->origin, (unsigned long long)fe->seq);
        }
        if (rv == EDGE_OK && op->conflict != NULL) rv = put_conflict(&a, op->conflict);
        o->frag_len = (uint32_t)(a.len - o->frag_off);
    }
    e->n_ops = k;
    e->bm_off = (uint32_t)a.len;
    if (rv == EDGE_OK) rv = edge_rt_bookmark_format(after, &a);
    e->bm_len = (uint32_t)(a.len - e->bm_off);
    if (rv == EDGE_OK) rv = edge_buf_putc(&a, '\0');
    if (rv != EDGE_OK) {
        edge_buf_free(&a);
        edge_free(e->ops);
        edge_free(e->cols);
        edge_free(e);
        return NULL;
    }
    size_t len;
    e->arena = edge_buf_steal(&a, &len);
    return e;
}

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
static void sub_position(const struct rt_sub *sub, struct edge_buf *out)
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

static void frame_next(struct rt_session *s)
{
    if (s->sse) return;
    if (s->out_n == 0) edge_buf_append(&s->out, BATCH_HEAD, BATCH_HEAD_LEN);
    else edge_buf_putc(&s->out, ',');
}

/* Queue one change event for sub in the session's frame of this turn. */
static void queue_event(struct rt_session *s, const struct rt_sub *sub, const struct rt_entry *e, const struct rt_op *o,
                        const char *bm, size_t bm_len)
{
    struct edge_buf *b = &s->out;
    if (s->sse) {
        edge_buf_puts(b, "id: ");
        edge_buf_append(b, bm, bm_len);
        edge_buf_puts(b, "\ndata: ");
    }
    frame_next(s);
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

static size_t session_unsent(const struct rt_session *s)
{
    return s->closed ? 0 : edge_http_conn_unsent(s->c);
}

/* ---------------------------------------------------------------------------------- */
/* Filters                                                                            */
/* ---------------------------------------------------------------------------------- */

static bool sub_matches(const struct rt_sub *sub, const struct rt_entry *e, const struct rt_op *o)
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
/* Table counts (status)                                                              */
/* ---------------------------------------------------------------------------------- */

void edge__rt_table_count(struct edge_rt *rt, const char *name, int d)
{
    pthread_mutex_lock(&rt->mu);
    size_t i = 0;
    for (; i < rt->n_tables; i++) {
        if (strcmp(rt->tables[i].name, name) == 0) break;
    }
    if (i == rt->n_tables && d > 0) {
        struct table_count *g = edge_realloc(rt->tables, (rt->n_tables + 1) * sizeof(*g));
        char *nm = edge_strdup(name);
        if (g != NULL) rt->tables = g;
        if (g != NULL && nm != NULL) {
            rt->tables[rt->n_tables++] = (struct table_count){nm, 0};
        } else {
            edge_free(nm);
            i = SIZE_MAX;
        }
    }
    if (i < rt->n_tables) rt->tables[i].n += d;
    pthread_mutex_unlock(&rt->mu);
}

int edge_rt_tables_json(struct edge_rt *rt, struct edge_buf *out)
{
    int rv = edge_buf_putc(out, '{');
    pthread_mutex_lock(&rt->mu);
    bool first = true;
    for (size_t i = 0; i < rt->n_tables && rv == EDGE_OK; i++) {
        if (rt->tables[i].n <= 0) continue;
        if (!first) rv = edge_buf_putc(out, ',');
        first = false;
        if (rv == EDGE_OK) rv = edge_buf_json_cstr(out, rt->tables[i].name);
        if (rv == EDGE_OK) rv = edge_buf_printf(out, ":%lld", (long long)rt->tables[i].n);
    }
    pthread_mutex_unlock(&rt->mu);
    if (rv == EDGE_OK) rv = edge_buf_putc(out, '}');
    return rv;
}

int edge_rt_position(struct edge_rt *rt, struct edge_buf *out)
{
    pthread_mutex_lock(&rt->mu);
    int rv = edge_rt_bookmark_format(&rt->pos, out);
    pthread_mutex_unlock(&rt->mu);
    return rv;
}

/* ---------------------------------------------------------------------------------- */
/* Subscriptions                                                                      */
/* ---------------------------------------------------------------------------------- */

void edge__rt_sub_free(struct rt_sub *sub)
{
    for (int i = 0; i < sub->n_tables; i++) edge_free(sub->tables[i]);
    edge_free(sub->tables);
    for (int i = 0; i < sub->n_where; i++) {
        edge_free(sub->where[i].col);
        edge_free(sub->where[i].val);
    }
    edge_free(sub->where);
    for (int i = 0; i < sub->n_keys; i++) edge_free(sub->keys[i]);
    edge_free(sub->keys);
    edge_vclock_close(&sub->pos);
    edge_free(sub);
}

void edge__rt_loop_activate(struct rt_loop *rl)
{
    struct edge_rt *rt = rl->rt;
    if (rl->n_change_subs++ > 0) return;
    pthread_mutex_lock(&rt->mu);
    if (!rl->active) {
        rl->active = true;
        rt->n_active++;
        /* From here on every entry after this position comes to this loop. */
        edge_vclock_merge(&rl->lvv, &rt->pos);
    }
    pthread_mutex_unlock(&rt->mu);
}

static void loop_deactivate(struct rt_loop *rl)
{
    struct edge_rt *rt = rl->rt;
    if (--rl->n_change_subs > 0) return;
    pthread_mutex_lock(&rt->mu);
    if (rl->active) {
        rl->active = false;
        rt->n_active--;
    }
    pthread_mutex_unlock(&rt->mu);
}

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

/* Remove sub from its session (and the counts). */
void edge__rt_sub_remove(struct rt_sub *sub)
{
    struct rt_session *s = sub->s;
    for (struct rt_sub **pp = &s->subs; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == sub) {
            *pp = sub->next;
            break;
        }
    }
    s->n_subs--;
    if (sub->state == SUB_CATCHUP) edge__rt_catchup_count(s->rl, -1);
    loop_deactivate(s->rl);
    for (int i = 0; i < sub->n_tables; i++) edge__rt_table_count(s->rt, sub->tables[i], -1);
    atomic_fetch_sub(&s->rt->m.subscriptions, 1);
    edge__rt_sub_free(sub);
}

/* The log no longer holds what sub needs: tell it where to start over, drop it. */
static void sub_resync(struct rt_sub *sub)
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
    sub_position(sub, &b);
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
    sub->state = vv_le(&sub->pos, &rl->lvv) ? SUB_LIVE : SUB_AHEAD;
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
    struct rt_entry *e = entry_build(fe, &after);
    edge_vclock_close(&after);
    if (e == NULL) return;
    for (size_t i = 0; i < e->n_ops; i++) {
        if (sub_matches(sub, e, &e->ops[i])) queue_event(sub->s, sub, e, &e->ops[i], e->arena + e->bm_off, e->bm_len);
    }
    entry_unref(e);
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
    if (session_unsent(s) > s->rt->lim.queue_bytes / 2) return;
    if (vv_le(&rl->lvv, &sub->pos)) {
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
        sub_resync(sub);
        return;
    }
    if (!more && vv_le(&rl->lvv, &sub->pos)) sub_go_live(sub);
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
        sub_position(sub, &b);
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
                sub_position(sub, &own);
                bm = own.data ? own.data : "";
                bml = own.len;
            }
            for (size_t i = 0; i < e->n_ops; i++) {
                if (sub_matches(sub, e, &e->ops[i])) queue_event(s, sub, e, &e->ops[i], bm, bml);
            }
            edge_buf_free(&own);
            if (sub->state == SUB_AHEAD && vv_le(&sub->pos, &rl->lvv)) sub->state = SUB_LIVE;
        }
    }
}

static void deliver_broadcast(struct rt_loop *rl, struct rt_entry *e)
{
    const char *ch = e->arena + e->chan_off;
    for (struct rt_session *s = rl->sessions; s != NULL; s = s->next) {
        if (s->closed) continue;
        for (int i = 0; i < s->n_channels; i++) {
            if (strlen(s->channels[i]) != e->chan_len || memcmp(s->channels[i], ch, e->chan_len) != 0) continue;
            struct edge_buf *b = &s->out;
            if (s->sse) edge_buf_puts(b, "event: broadcast\ndata: ");
            frame_next(s);
            edge_buf_puts(b, "{\"type\":\"broadcast\",\"channel\":");
            edge_buf_json_str(b, ch, e->chan_len);
            edge_buf_puts(b, ",\"payload\":");
            edge_buf_append(b, e->arena + e->pay_off, e->pay_len);
            edge_buf_putc(b, '}');
            if (s->sse) edge_buf_puts(b, "\n\n");
            s->out_n++;
            atomic_fetch_add(&rl->rt->m.broadcast_deliveries, 1);
            break;
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
    for (size_t i = 0; i < n; i++) {
        struct rt_entry *e = list[i];
        if (e->type == ENT_CHANGE) {
            deliver_change(rl, e);
        } else if (e->type == ENT_BROADCAST) {
            deliver_broadcast(rl, e);
        } else {
            for (struct rt_session *s = rl->sessions; s != NULL; s = s->next) {
                for (struct rt_sub *sub = s->subs; sub != NULL && !s->closed;) {
                    struct rt_sub *sn = sub->next;
                    sub_resync(sub);
                    sub = sn;
                }
            }
        }
        entry_unref(e);
    }
    edge_free(list);
    size_t limit = rl->rt->lim.queue_bytes;
    for (struct rt_session *s = rl->sessions; s != NULL;) {
        struct rt_session *next = s->next;
        edge__rt_session_flush(s);
        if (!s->closed && session_unsent(s) > limit) slow_consumer(s);
        s = next;
    }
}

static void loop_push(struct edge_rt *rt, struct rt_loop *rl, struct rt_entry *e)
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
static void on_feed_entry(void *ud, const struct edge_feed_entry *fe)
{
    struct edge_rt *rt = ud;
    atomic_fetch_add(&rt->m.entries_in, 1);
    pthread_mutex_lock(&rt->mu);
    edge_vclock_set(&rt->pos, fe->origin, fe->seq);
    if (rt->n_active > 0) {
        struct rt_entry *e = entry_build(fe, &rt->pos);
        if (e == NULL) {
            EDGE_LOG(EDGE_LOG_ERROR, EDGE_MOD_API, "realtime: out of memory rendering %s:%llu", fe->origin,
                     (unsigned long long)fe->seq);
        }
        for (int i = 0; e != NULL && i < rt->host.n_loops; i++) {
            if (rt->loops[i].active) loop_push(rt, &rt->loops[i], e);
        }
        entry_unref(e);
    }
    pthread_mutex_unlock(&rt->mu);
}

static void on_feed_reset(void *ud)
{
    struct edge_rt *rt = ud;
    struct rt_entry *e = edge_calloc(1, sizeof(*e));
    if (e == NULL) return;
    atomic_store(&e->refs, 1);
    e->type = ENT_RESET;
    pthread_mutex_lock(&rt->mu);
    for (int i = 0; i < rt->host.n_loops; i++) {
        if (rt->loops[i].active) loop_push(rt, &rt->loops[i], e);
    }
    pthread_mutex_unlock(&rt->mu);
    entry_unref(e);
}

void edge_rt_broadcast(struct edge_rt *rt, const char *channel, const char *payload_json, size_t len)
{
    atomic_fetch_add(&rt->m.broadcasts_in, 1);
    struct rt_entry *e = edge_calloc(1, sizeof(*e));
    if (e == NULL) return;
    atomic_store(&e->refs, 1);
    e->type = ENT_BROADCAST;
    size_t cl = strlen(channel);
    e->arena = edge_malloc(cl + len + 1);
    if (e->arena == NULL) {
        edge_free(e);
        return;
    }
    memcpy(e->arena, channel, cl);
    memcpy(e->arena + cl, payload_json, len);
    e->arena[cl + len] = '\0';
    e->chan_off = 0;
    e->chan_len = (uint32_t)cl;
    e->pay_off = (uint32_t)cl;
    e->pay_len = (uint32_t)len;
    for (int i = 0; i < rt->host.n_loops; i++) {
        if (rt->loops[i].inited) loop_push(rt, &rt->loops[i], e);
    }
    entry_unref(e);
}

void edge_rt_broadcast_local(struct edge_rt *rt, int loop, const char *channel, const char *payload_json, size_t len)
{
    (void)loop;
    edge_rt_broadcast(rt, channel, payload_json, len);
}

/* ---------------------------------------------------------------------------------- */
/* Life cycle                                                                         */
/* ---------------------------------------------------------------------------------- */

int edge_rt_create(struct edge_repl_state *st, const char *db_path, const struct edge_rt_host *host,
                   const struct edge_rt_limits *lim, struct edge_rt **out)
{
    struct edge_rt *rt = edge_calloc(1, sizeof(*rt));
    if (rt == NULL) return EDGE_ENOMEM;
    rt->st = st;
    rt->db_path = edge_strdup(db_path);
    rt->host = *host;
    rt->lim = *lim;
    if (rt->lim.max_connections <= 0) rt->lim.max_connections = 10000;
    if (rt->lim.max_subscriptions <= 0) rt->lim.max_subscriptions = 64;
    if (rt->lim.queue_bytes == 0) rt->lim.queue_bytes = 1024 * 1024;
    if (rt->lim.backlog_batch <= 0) rt->lim.backlog_batch = 512;
    pthread_mutex_init(&rt->mu, NULL);
    edge_vclock_init(&rt->pos);
    rt->loops = edge_calloc((size_t)host->n_loops, sizeof(*rt->loops));
    if (rt->loops == NULL || rt->db_path == NULL) {
        edge_rt_destroy(rt);
        return EDGE_ENOMEM;
    }
    for (int i = 0; i < host->n_loops; i++) {
        rt->loops[i].rt = rt;
        rt->loops[i].idx = i;
        pthread_mutex_init(&rt->loops[i].mu, NULL);
        edge_vclock_init(&rt->loops[i].lvv);
    }
    if (st != NULL) {
        /* Entries before the listener are history: the position starts at the VV. */
        edge_repl_state_vv(st, &rt->pos);
        struct edge_feed_listener l = {on_feed_entry, on_feed_reset, rt};
        int rv = edge_feed_listen(st, &l);
        if (rv != EDGE_OK) {
            edge_rt_destroy(rt);
            return rv;
        }
    }
    *out = rt;
    return EDGE_OK;
}

int edge_rt_loop_init(struct edge_rt *rt, int loop, uv_loop_t *uvl)
{
    struct rt_loop *rl = &rt->loops[loop];
    rl->uvl = uvl;
    uv_idle_init(uvl, &rl->idle);
    rl->idle.data = rl;
    rl->inited = true;
    return EDGE_OK;
}

void edge_rt_loop_stop(struct edge_rt *rt, int loop)
{
    struct rt_loop *rl = &rt->loops[loop];
    if (!rl->inited) return;
    uv_close((uv_handle_t *)&rl->idle, NULL);
    edge_store_close(rl->rconn);
    rl->rconn = NULL;
}

void edge_rt_destroy(struct edge_rt *rt)
{
    if (rt == NULL) return;
    if (rt->st != NULL) edge_feed_unlisten(rt->st, rt);
    for (int i = 0; rt->loops != NULL && i < rt->host.n_loops; i++) {
        struct rt_loop *rl = &rt->loops[i];
        for (size_t k = 0; k < rl->n_pend; k++) entry_unref(rl->pend[k]);
        edge_free(rl->pend);
        edge_vclock_close(&rl->lvv);
        edge_store_close(rl->rconn);
        pthread_mutex_destroy(&rl->mu);
    }
    edge_free(rt->loops);
    for (size_t i = 0; i < rt->n_tables; i++) edge_free(rt->tables[i].name);
    edge_free(rt->tables);
    edge_vclock_close(&rt->pos);
    pthread_mutex_destroy(&rt->mu);
    edge_free(rt->db_path);
    edge_free(rt);
}

void edge_rt_stats(struct edge_rt *rt, struct edge_rt_stats *out)
{
    out->connections = (uint64_t)atomic_load(&rt->conns);
    out->subscriptions = atomic_load(&rt->m.subscriptions);
    out->entries_in = atomic_load(&rt->m.entries_in);
    out->deliveries = atomic_load(&rt->m.deliveries);
    out->frames = atomic_load(&rt->m.frames);
    out->bytes_out = atomic_load(&rt->m.bytes_out);
    out->closed_slow = atomic_load(&rt->m.closed_slow);
    out->closed_resync = atomic_load(&rt->m.closed_resync);
    out->refused_connections = atomic_load(&rt->m.refused_connections);
    out->refused_subscriptions = atomic_load(&rt->m.refused_subscriptions);
    out->bad_messages = atomic_load(&rt->m.bad_messages);
    out->auth_failed = atomic_load(&rt->m.auth_failed);
    out->broadcasts_in = atomic_load(&rt->m.broadcasts_in);
    out->broadcast_deliveries = atomic_load(&rt->m.broadcast_deliveries);
}
