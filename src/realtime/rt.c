/* SPDX-License-Identifier: MIT */
/* The real-time engine (see rt.h). */
#include "realtime/rt.h"

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

enum { ENT_CHANGE = 0, ENT_RESET = 1, ENT_BROADCAST = 2 };
enum { SUB_CATCHUP = 0, SUB_LIVE = 1, SUB_AHEAD = 2 };

/* Strings of an entry live in its arena; ops and columns refer to them by offset. */
struct rt_col {
    uint32_t name_off, name_len, val_off, val_len;
    bool pk;
};

struct rt_op {
    uint32_t table_off, table_len;
    int kind;
    uint32_t frag_off, frag_len; /* the event's fields after "sub", without the bookmark */
    uint32_t pk_off, pk_len;
    uint32_t col0, ncols;
};

struct rt_entry {
    _Atomic int refs;
    int type;
    char origin[EDGE_VCLOCK_REGION_MAX + 1];
    uint64_t seq;
    char *arena;
    struct rt_op *ops;
    size_t n_ops;
    struct rt_col *cols;
    uint32_t bm_off, bm_len;       /* the node's position after the entry */
    uint32_t chan_off, chan_len;   /* broadcast */
    uint32_t pay_off, pay_len;
};

struct rt_where {
    char *col;
    char *val; /* canonical JSON text */
};

struct rt_session;

struct rt_sub {
    int64_t id;
    struct rt_session *s;
    char **tables;
    int n_tables;
    struct rt_where *where;
    int n_where;
    char **keys; /* canonical JSON text of each key */
    int n_keys;
    int state;
    struct edge_vclock pos; /* CATCHUP and AHEAD: what it has */
    struct rt_sub *next;
};

struct rt_loop;

struct rt_session {
    struct edge_rt *rt;
    struct rt_loop *rl;
    struct edge_http_conn *c;
    bool authed, read_only, closed, sse;
    struct rt_sub *subs;
    int n_subs;
    char **channels;
    int n_channels;
    struct edge_buf out; /* events of this turn, comma-separated */
    int out_n;
    struct rt_session *prev, *next;
};

struct rt_loop {
    struct edge_rt *rt;
    int idx;
    uv_loop_t *uvl;
    uv_idle_t idle; /* while subscriptions catch up */
    bool idle_on, inited;
    pthread_mutex_t mu;
    struct rt_entry **pend;
    size_t n_pend, cap_pend;
    bool posted;
    struct edge_task task;
    bool active;            /* receives change entries (rt->mu) */
    struct edge_vclock lvv; /* loop thread: entries processed here */
    struct rt_session *sessions;
    int n_catchup;
    int n_change_subs;
    struct edge_store_conn *rconn;
};

struct table_count {
    char *name;
    int64_t n;
};

struct edge_rt {
    struct edge_repl_state *st;
    char *db_path;
    struct edge_rt_host host;
    struct edge_rt_limits lim;
    struct rt_loop *loops;
    pthread_mutex_t mu;
    struct edge_vclock pos; /* the node's position: entries the feed delivered (mu) */
    int n_active;
    struct table_count *tables;
    size_t n_tables;
    _Atomic int64_t conns;
    struct {
        _Atomic uint64_t subscriptions, entries_in, deliveries, frames, bytes_out;
        _Atomic uint64_t closed_slow, closed_resync, refused_connections, refused_subscriptions, bad_messages,
            auth_failed, broadcasts_in, broadcast_deliveries;
    } m;
};

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

static void session_close(struct rt_session *s, uint16_t code, const char *reason);

static void send_text(struct rt_session *s, const char *p, size_t n)
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

static void send_buf(struct rt_session *s, struct edge_buf *b)
{
    send_text(s, b->data ? b->data : "", b->len);
}

/* An error frame: {"type":"error","code","message","id"?} (SSE: an "error" event). */
static void send_error(struct rt_session *s, const char *code, const char *msg, json_t *id)
{
    struct edge_buf b;
    edge_buf_init(&b, 1 << 16);
    if (s->sse) edge_buf_puts(&b, "event: error\ndata: ");
    edge_buf_printf(&b, "{\"type\":\"error\",\"code\":\"%s\",\"message\":", code);
    edge_buf_json_cstr(&b, msg);
    if (id != NULL && json_is_integer(id)) edge_buf_printf(&b, ",\"id\":%lld", (long long)json_integer_value(id));
    edge_buf_putc(&b, '}');
    if (s->sse) edge_buf_puts(&b, "\n\n");
    send_buf(s, &b);
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
static void session_flush(struct rt_session *s)
{
    if (s->out_n == 0) return;
    if (s->sse) {
        send_buf(s, &s->out);
    } else if (s->out.len < BATCH_HEAD_LEN) {
        /* an append failed (out of memory): nothing sensible to send */
    } else if (s->out_n == 1) {
        send_text(s, s->out.data + BATCH_HEAD_LEN, s->out.len - BATCH_HEAD_LEN);
    } else if (edge_buf_puts(&s->out, "]}") == EDGE_OK) {
        send_buf(s, &s->out);
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

static void table_count(struct edge_rt *rt, const char *name, int d)
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

static void sub_free(struct rt_sub *sub)
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

static void loop_activate(struct rt_loop *rl)
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

static void catchup_count(struct rt_loop *rl, int d)
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
static void sub_remove(struct rt_sub *sub)
{
    struct rt_session *s = sub->s;
    for (struct rt_sub **pp = &s->subs; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == sub) {
            *pp = sub->next;
            break;
        }
    }
    s->n_subs--;
    if (sub->state == SUB_CATCHUP) catchup_count(s->rl, -1);
    loop_deactivate(s->rl);
    for (int i = 0; i < sub->n_tables; i++) table_count(s->rt, sub->tables[i], -1);
    atomic_fetch_sub(&s->rt->m.subscriptions, 1);
    sub_free(sub);
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
    session_flush(s);
    send_buf(s, &b);
    edge_buf_free(&b);
    atomic_fetch_add(&s->rt->m.closed_resync, 1);
    sub_remove(sub);
    if (s->sse) session_close(s, 1000, "resync required");
}

static void send_ready(struct rt_sub *sub)
{
    struct rt_session *s = sub->s;
    struct edge_buf b;
    edge_buf_init(&b, 1 << 16);
    if (s->sse) edge_buf_puts(&b, "event: ready\ndata: ");
    edge_buf_printf(&b, "{\"type\":\"ready\",\"sub\":%lld,\"bookmark\":\"", (long long)sub->id);
    sub_position(sub, &b);
    edge_buf_puts(&b, "\"}");
    if (s->sse) edge_buf_puts(&b, "\n\n");
    send_buf(s, &b);
    edge_buf_free(&b);
}

/* A catching-up sub has reached the loop's position: it follows the live entries now. */
static void sub_go_live(struct rt_sub *sub)
{
    struct rt_loop *rl = sub->s->rl;
    catchup_count(rl, -1);
    sub->state = vv_le(&sub->pos, &rl->lvv) ? SUB_LIVE : SUB_AHEAD;
    session_flush(sub->s);
    send_ready(sub);
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

static struct edge_store_conn *loop_rconn(struct rt_loop *rl)
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
static void sub_catchup_step(struct rt_sub *sub)
{
    struct rt_session *s = sub->s;
    struct rt_loop *rl = s->rl;
    /* The log is this subscriber's queue: read on only as fast as it reads. */
    if (session_unsent(s) > s->rt->lim.queue_bytes / 2) return;
    if (vv_le(&rl->lvv, &sub->pos)) {
        sub_go_live(sub);
        return;
    }
    struct edge_store_conn *rc = loop_rconn(rl);
    if (rc == NULL) return;
    bool gap = false, more = false;
    struct catchup_ctx x = {sub};
    int rv = edge_feed_read(edge_store_db(rc), &sub->pos, &rl->lvv, (size_t)s->rt->lim.backlog_batch, catchup_entry,
                            &x, &gap, &more);
    session_flush(s);
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
            if (sub->state == SUB_CATCHUP) sub_catchup_step(sub);
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
        send_buf(s, &b);
        edge_buf_free(&b);
    }
    atomic_fetch_add(&s->rt->m.closed_slow, 1);
    session_close(s, 4008, "slow consumer");
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
        session_flush(s);
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
/* Protocol                                                                           */
/* ---------------------------------------------------------------------------------- */

/* Canonical JSON text of a filter value, as the feed renders column values. */
static char *canon_value(json_t *v)
{
    struct edge_buf b;
    edge_buf_init(&b, 1 << 20);
    int rv;
    if (json_is_string(v)) rv = edge_buf_json_str(&b, json_string_value(v), json_string_length(v));
    else if (json_is_integer(v)) rv = edge_buf_printf(&b, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v)) rv = edge_buf_json_double(&b, json_real_value(v));
    else if (json_is_true(v)) rv = edge_buf_puts(&b, "1");
    else if (json_is_false(v)) rv = edge_buf_puts(&b, "0");
    else if (json_is_null(v)) rv = edge_buf_puts(&b, "null");
    else if (json_is_array(v)) {
        /* a composite key */
        rv = edge_buf_putc(&b, '[');
        for (size_t i = 0; i < json_array_size(v) && rv == EDGE_OK; i++) {
            char *e = canon_value(json_array_get(v, i));
            if (e == NULL) rv = EDGE_EINVAL;
            if (rv == EDGE_OK && i > 0) rv = edge_buf_putc(&b, ',');
            if (rv == EDGE_OK) rv = edge_buf_puts(&b, e);
            edge_free(e);
        }
        if (rv == EDGE_OK) rv = edge_buf_putc(&b, ']');
    } else rv = EDGE_EINVAL;
    if (rv == EDGE_OK) rv = edge_buf_putc(&b, '\0');
    if (rv != EDGE_OK) {
        edge_buf_free(&b);
        return NULL;
    }
    size_t n;
    return edge_buf_steal(&b, &n);
}

/* Parse a subscribe request into sub (fields only); false with a message. */
static bool parse_subscribe(struct rt_session *s, json_t *m, struct rt_sub *sub, const char **from, char *err,
                            size_t errlen)
{
    json_t *id = json_object_get(m, "id"), *tables = json_object_get(m, "tables");
    json_t *where = json_object_get(m, "where"), *keys = json_object_get(m, "keys"), *f = json_object_get(m, "from");
    if (!json_is_integer(id)) {
        snprintf(err, errlen, "subscribe needs an integer id");
        return false;
    }
    sub->id = json_integer_value(id);
    for (struct rt_sub *o = s->subs; o != NULL; o = o->next) {
        if (o->id == sub->id) {
            snprintf(err, errlen, "subscription id %lld is in use on this connection", (long long)sub->id);
            return false;
        }
    }
    if (json_is_string(tables)) {
        json_t *one = json_array();
        json_array_append(one, tables);
        json_object_set_new(m, "tables", one);
        tables = one;
    }
    if (!json_is_array(tables) || json_array_size(tables) == 0 || json_array_size(tables) > 64) {
        snprintf(err, errlen, "tables must be a non-empty array of table names (at most 64)");
        return false;
    }
    sub->tables = edge_calloc(json_array_size(tables), sizeof(char *));
    if (sub->tables == NULL) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    for (size_t i = 0; i < json_array_size(tables); i++) {
        json_t *t = json_array_get(tables, i);
        if (!json_is_string(t) || json_string_length(t) == 0 || json_string_length(t) > 255 ||
            strncmp(json_string_value(t), "_edge_", 6) == 0) {
            snprintf(err, errlen, "tables[%zu] must be the name of a table", i);
            return false;
        }
        sub->tables[sub->n_tables++] = edge_strdup(json_string_value(t));
    }
    if (where != NULL && !json_is_null(where)) {
        if (!json_is_object(where) || json_object_size(where) > 32) {
            snprintf(err, errlen, "where must be an object {column: value} (at most 32 columns)");
            return false;
        }
        sub->where = edge_calloc(json_object_size(where) + 1, sizeof(*sub->where));
        const char *k;
        json_t *v;
        json_object_foreach(where, k, v)
        {
            char *cv = canon_value(v);
            if (cv == NULL || json_is_array(v)) {
                edge_free(cv);
                snprintf(err, errlen, "where.%s must be a string, number, boolean or null", k);
                return false;
            }
            sub->where[sub->n_where].col = edge_strdup(k);
            sub->where[sub->n_where++].val = cv;
        }
    }
    if (keys != NULL && !json_is_null(keys)) {
        if (!json_is_array(keys) || json_array_size(keys) == 0 || json_array_size(keys) > 10000) {
            snprintf(err, errlen, "keys must be a non-empty array of primary keys (at most 10000)");
            return false;
        }
        sub->keys = edge_calloc(json_array_size(keys), sizeof(char *));
        for (size_t i = 0; sub->keys != NULL && i < json_array_size(keys); i++) {
            char *cv = canon_value(json_array_get(keys, i));
            if (cv == NULL) {
                snprintf(err, errlen, "keys[%zu] must be a value or an array of values", i);
                return false;
            }
            sub->keys[sub->n_keys++] = cv;
        }
    }
    if (f != NULL && !json_is_null(f) && !json_is_string(f)) {
        snprintf(err, errlen, "from must be \"now\", \"start\" or a bookmark");
        return false;
    }
    *from = json_is_string(f) ? json_string_value(f) : "now";
    return true;
}

/* from = "start": the oldest entry each origin still has in the log. */
static void start_position(struct rt_loop *rl, struct edge_vclock *pos)
{
    struct edge_store_conn *rc = loop_rconn(rl);
    sqlite3_stmt *st = NULL;
    if (rc == NULL || sqlite3_prepare_v2(edge_store_db(rc), "SELECT origin, seq FROM _edge_vv", -1, &st, NULL) != SQLITE_OK) {
        sqlite3_finalize(st);
        return;
    }
    sqlite3_stmt *mn = NULL;
    sqlite3_prepare_v2(edge_store_db(rc), "SELECT min(seq) FROM _edge_log WHERE origin = ?1", -1, &mn, NULL);
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *o = (const char *)sqlite3_column_text(st, 0);
        uint64_t have = (uint64_t)sqlite3_column_int64(st, 1), floor = have;
        if (mn != NULL) {
            sqlite3_bind_text(mn, 1, o, -1, SQLITE_TRANSIENT);
            if (sqlite3_step(mn) == SQLITE_ROW && sqlite3_column_type(mn, 0) != SQLITE_NULL) {
                floor = (uint64_t)sqlite3_column_int64(mn, 0) - 1;
            }
            sqlite3_reset(mn);
        }
        if (floor > 0) edge_vclock_set(pos, o, floor);
    }
    sqlite3_finalize(mn);
    sqlite3_finalize(st);
}

static void handle_subscribe(struct rt_session *s, json_t *m)
{
    struct edge_rt *rt = s->rt;
    json_t *id = json_object_get(m, "id");
    if (rt->st == NULL) {
        send_error(s, "NOT_A_CLUSTER", "this node keeps no change log (a single node): only broadcast channels work", id);
        return;
    }
    if (s->n_subs >= rt->lim.max_subscriptions) {
        atomic_fetch_add(&rt->m.refused_subscriptions, 1);
        send_error(s, "TOO_MANY_SUBSCRIPTIONS", "this connection has realtime.max_subscriptions subscriptions", id);
        return;
    }
    struct rt_sub *sub = edge_calloc(1, sizeof(*sub));
    if (sub == NULL) {
        send_error(s, "INTERNAL", "out of memory", id);
        return;
    }
    edge_vclock_init(&sub->pos);
    sub->s = s;
    const char *from = "now";
    char err[256];
    if (!parse_subscribe(s, m, sub, &from, err, sizeof(err))) {
        atomic_fetch_add(&rt->m.bad_messages, 1);
        send_error(s, "BAD_SUBSCRIBE", err, id);
        sub_free(sub);
        return;
    }
    bool now = strcmp(from, "now") == 0, start = strcmp(from, "start") == 0;
    if (!now && !start && edge_rt_bookmark_parse(from, strlen(from), &sub->pos) != EDGE_OK) {
        atomic_fetch_add(&rt->m.bad_messages, 1);
        send_error(s, "BOOKMARK_INVALID", "from must be \"now\", \"start\" or a bookmark REGION:SEQ[,REGION:SEQ...]", id);
        sub_free(sub);
        return;
    }
    loop_activate(s->rl);
    if (start) start_position(s->rl, &sub->pos);
    sub->next = s->subs;
    s->subs = sub;
    s->n_subs++;
    for (int i = 0; i < sub->n_tables; i++) table_count(rt, sub->tables[i], +1);
    atomic_fetch_add(&rt->m.subscriptions, 1);
    struct edge_buf b;
    edge_buf_init(&b, 1 << 16);
    if (s->sse) edge_buf_puts(&b, "event: subscribed\ndata: ");
    edge_buf_printf(&b, "{\"type\":\"subscribed\",\"id\":%lld,\"sub\":%lld}", (long long)sub->id, (long long)sub->id);
    if (s->sse) edge_buf_puts(&b, "\n\n");
    send_buf(s, &b);
    edge_buf_free(&b);
    if (now) {
        sub->state = SUB_LIVE;
        send_ready(sub);
        return;
    }
    sub->state = SUB_CATCHUP;
    catchup_count(s->rl, +1);
    sub_catchup_step(sub); /* the first batch at once */
}

static void handle_unsubscribe(struct rt_session *s, json_t *m)
{
    json_t *id = json_object_get(m, "id");
    if (!json_is_integer(id)) {
        send_error(s, "BAD_MESSAGE", "unsubscribe needs the integer id of a subscription", id);
        return;
    }
    for (struct rt_sub *sub = s->subs; sub != NULL; sub = sub->next) {
        if (sub->id == json_integer_value(id)) {
            sub_remove(sub);
            char out[96];
            int n = snprintf(out, sizeof(out), "{\"type\":\"unsubscribed\",\"id\":%lld}", (long long)json_integer_value(id));
            send_text(s, out, (size_t)n);
            return;
        }
    }
    send_error(s, "NO_SUCH_SUBSCRIPTION", "no subscription with this id on this connection", id);
}

bool edge_rt_channel_ok(const char *c)
{
    size_t n = strlen(c);
    if (n == 0 || n > 128) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)c[i];
        if (ch <= 0x20 || ch == 0x7f || ch == '/') return false;
    }
    return true;
}

static void handle_join(struct rt_session *s, json_t *m)
{
    json_t *id = json_object_get(m, "id"), *ch = json_object_get(m, "channel");
    if (!json_is_string(ch) || !edge_rt_channel_ok(json_string_value(ch))) {
        send_error(s, "BAD_MESSAGE", "join needs a channel name (1..128 bytes, no spaces or '/')", id);
        return;
    }
    for (int i = 0; i < s->n_channels; i++) {
        if (strcmp(s->channels[i], json_string_value(ch)) == 0) goto answer;
    }
    if (s->n_channels >= s->rt->lim.max_subscriptions) {
        send_error(s, "TOO_MANY_SUBSCRIPTIONS", "this connection has realtime.max_subscriptions channels", id);
        return;
    }
    char **g = edge_realloc(s->channels, (size_t)(s->n_channels + 1) * sizeof(*g));
    if (g == NULL) {
        send_error(s, "INTERNAL", "out of memory", id);
        return;
    }
    s->channels = g;
    s->channels[s->n_channels++] = edge_strdup(json_string_value(ch));
answer:;
    struct edge_buf b;
    edge_buf_init(&b, 1 << 16);
    edge_buf_puts(&b, "{\"type\":\"joined\",\"channel\":");
    edge_buf_json_cstr(&b, json_string_value(ch));
    if (json_is_integer(id)) edge_buf_printf(&b, ",\"id\":%lld", (long long)json_integer_value(id));
    edge_buf_putc(&b, '}');
    send_buf(s, &b);
    edge_buf_free(&b);
}

static void handle_broadcast(struct rt_session *s, json_t *m)
{
    json_t *id = json_object_get(m, "id"), *ch = json_object_get(m, "channel"), *p = json_object_get(m, "payload");
    if (s->read_only) {
        send_error(s, "AUTH_READ_ONLY", "broadcasting needs a read-write token", id);
        return;
    }
    if (!json_is_string(ch) || !edge_rt_channel_ok(json_string_value(ch)) || p == NULL) {
        send_error(s, "BAD_MESSAGE", "broadcast needs a channel name and a payload", id);
        return;
    }
    char *pj = json_dumps(p, JSON_COMPACT | JSON_ENCODE_ANY);
    if (pj == NULL) {
        send_error(s, "INTERNAL", "out of memory", id);
        return;
    }
    if (s->rt->host.broadcast != NULL) {
        s->rt->host.broadcast(s->rt->host.ud, s->rl->idx, json_string_value(ch), pj, strlen(pj));
    } else {
        edge_rt_broadcast(s->rt, json_string_value(ch), pj, strlen(pj));
    }
    free(pj);
    if (json_is_integer(id)) {
        char out[96];
        int n = snprintf(out, sizeof(out), "{\"type\":\"broadcast_sent\",\"id\":%lld}", (long long)json_integer_value(id));
        send_text(s, out, (size_t)n);
    }
}

static void on_message(void *ud, struct edge_http_conn *c, int opcode, const uint8_t *data, size_t len)
{
    (void)c;
    struct rt_session *s = ud;
    struct edge_rt *rt = s->rt;
    if (s->closed) return;
    if (opcode != 1) {
        atomic_fetch_add(&rt->m.bad_messages, 1);
        send_error(s, "BAD_MESSAGE", "messages are JSON text frames", NULL);
        return;
    }
    json_error_t jerr;
    json_t *m = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (m == NULL || !json_is_object(m)) {
        atomic_fetch_add(&rt->m.bad_messages, 1);
        send_error(s, "BAD_MESSAGE", m == NULL ? "the message is not JSON" : "the message must be a JSON object", NULL);
        json_decref(m);
        return;
    }
    json_t *jwt = json_object_get(m, "jwt");
    if (!s->authed) {
        const char *code = "AUTH_REQUIRED";
        bool ro = false;
        if (!json_is_string(jwt) ||
            !rt->host.auth(rt->host.ud, json_string_value(jwt), json_string_length(jwt), &ro, &code)) {
            atomic_fetch_add(&rt->m.auth_failed, 1);
            send_error(s, code ? code : "AUTH_REQUIRED",
                       json_is_string(jwt) ? "the token is not valid"
                                           : "authenticate with an Authorization header or a jwt in the first message",
                       json_object_get(m, "id"));
            json_decref(m);
            session_close(s, 4001, "authentication failed");
            return;
        }
        s->authed = true;
        s->read_only = ro;
    }
    json_t *type = json_object_get(m, "type");
    const char *t = json_is_string(type) ? json_string_value(type) : "";
    if (strcmp(t, "subscribe") == 0) {
        handle_subscribe(s, m);
    } else if (strcmp(t, "unsubscribe") == 0) {
        handle_unsubscribe(s, m);
    } else if (strcmp(t, "join") == 0) {
        handle_join(s, m);
    } else if (strcmp(t, "broadcast") == 0) {
        handle_broadcast(s, m);
    } else if (strcmp(t, "auth") == 0) {
        send_text(s, "{\"type\":\"authed\"}", 17);
    } else if (strcmp(t, "ping") == 0) {
        json_t *id = json_object_get(m, "id");
        char out[96];
        int n = json_is_integer(id) ? snprintf(out, sizeof(out), "{\"type\":\"pong\",\"id\":%lld}",
                                               (long long)json_integer_value(id))
                                    : snprintf(out, sizeof(out), "{\"type\":\"pong\"}");
        send_text(s, out, (size_t)n);
    } else {
        atomic_fetch_add(&rt->m.bad_messages, 1);
        send_error(s, "BAD_MESSAGE", "unknown message type (subscribe, unsubscribe, join, broadcast, auth, ping)",
                   json_object_get(m, "id"));
    }
    json_decref(m);
}

static void session_free(struct rt_session *s)
{
    while (s->subs != NULL) sub_remove(s->subs);
    for (int i = 0; i < s->n_channels; i++) edge_free(s->channels[i]);
    edge_free(s->channels);
    edge_buf_free(&s->out);
    edge_http_conn_unref(s->c);
    edge_free(s);
}

/* The connection is gone: unlink and free the session (loop thread). */
static void on_close(void *ud, struct edge_http_conn *c)
{
    (void)c;
    struct rt_session *s = ud;
    struct rt_loop *rl = s->rl;
    if (s->prev) s->prev->next = s->next;
    else rl->sessions = s->next;
    if (s->next) s->next->prev = s->prev;
    atomic_fetch_sub(&s->rt->conns, 1);
    session_free(s);
}

static void session_close(struct rt_session *s, uint16_t code, const char *reason)
{
    if (s->closed) return;
    session_flush(s);
    s->closed = true;
    /* Subscriptions end now: nothing more is queued for a connection that is going. */
    while (s->subs != NULL) sub_remove(s->subs);
    if (s->sse) edge_http_stream_end(s->c);
    else edge_http_ws_close(s->c, code, reason);
}

static struct rt_session *session_new(struct edge_rt *rt, int loop, struct edge_http_conn *c)
{
    struct rt_session *s = edge_calloc(1, sizeof(*s));
    if (s == NULL) return NULL;
    s->rt = rt;
    s->rl = &rt->loops[loop];
    s->c = c;
    edge_http_conn_ref(c);
    edge_buf_init(&s->out, (size_t)1 << 30);
    s->next = s->rl->sessions;
    if (s->next) s->next->prev = s;
    s->rl->sessions = s;
    return s;
}

bool edge_rt_reserve(struct edge_rt *rt)
{
    if (atomic_fetch_add(&rt->conns, 1) >= rt->lim.max_connections) {
        atomic_fetch_sub(&rt->conns, 1);
        atomic_fetch_add(&rt->m.refused_connections, 1);
        return false;
    }
    return true;
}

void edge_rt_release(struct edge_rt *rt)
{
    atomic_fetch_sub(&rt->conns, 1);
}

int edge_rt_accept(struct edge_rt *rt, int loop, struct edge_http_conn *c, bool authed, bool read_only)
{
    if (edge_http_ws_accept(c, EDGE_RT_PROTOCOL) != EDGE_OK) {
        edge_rt_release(rt);
        return EDGE_EPROTO;
    }
    struct rt_session *s = session_new(rt, loop, c);
    if (s == NULL) {
        edge_rt_release(rt);
        edge_http_ws_close(c, 1011, "out of memory");
        return EDGE_ENOMEM;
    }
    s->authed = authed || !rt->host.auth_required;
    s->read_only = authed ? read_only : false;
    edge_http_conn_set_ws_handler(c, on_message, on_close, s);
    return EDGE_OK;
}

static void sse_closed(void *ud, struct edge_http_conn *c)
{
    on_close(ud, c);
}

int edge_rt_sse_open(struct edge_rt *rt, int loop, struct edge_http_conn *c, const char *subscribe_json, char *err,
                     size_t errlen)
{
    json_error_t jerr;
    json_t *m = json_loads(subscribe_json, 0, &jerr);
    if (m == NULL) {
        snprintf(err, errlen, "bad query");
        edge_rt_release(rt);
        return EDGE_EINVAL;
    }
    struct rt_session *s = session_new(rt, loop, c);
    if (s == NULL) {
        json_decref(m);
        edge_rt_release(rt);
        return EDGE_ENOMEM;
    }
    s->sse = true;
    s->authed = true;
    edge_http_conn_watch_close(c, sse_closed, s);
    handle_subscribe(s, m);
    json_decref(m);
    if (s->n_subs == 0 && !s->closed) session_close(s, 1000, "bad subscription");
    return EDGE_OK;
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
