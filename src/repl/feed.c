/* SPDX-License-Identifier: MIT */
/* The change feed (see feed.h). */
#include "repl/feed_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/alloc.h"
#include "core/log.h"
#include "repl/apply_int.h"
#include "repl/proto.h"
#include "repl/repl_int.h"
#include "repl/state.h"
#include "repl/trace.h"

/* Entries read per pass of a dispatch: a long catch-up goes out in several passes, so
 * one dispatch never holds an unbounded batch in memory. */
#define FEED_PASS_MAX 2048

void edge_feed_init(struct edge_repl_feed *f)
{
    memset(f, 0, sizeof(*f));
    pthread_mutex_init(&f->mu, NULL);
    edge_vclock_init(&f->cursor);
    edge_repl_trace_init();
    /* Tests only: hold every dispatch back this long after its commit, so the window
     * between a commit becoming visible and its listeners hearing of it can be hit on
     * purpose (router_cache_race). Never set in production. */
    const char *d = getenv("EDGE_TEST_FEED_DELAY_MS");
    if (d != NULL) {
        long v = strtol(d, NULL, 10);
        f->test_delay_ms = v > 0 && v <= 60000 ? (int)v : 0;
    }
}

void edge_feed_close(struct edge_repl_feed *f)
{
    edge_vclock_close(&f->cursor);
    pthread_mutex_destroy(&f->mu);
}

int edge_feed_listen(struct edge_repl_state *st, const struct edge_feed_listener *l)
{
    struct edge_repl_feed *f = &st->feed;
    int rv = EDGE_OK;
    pthread_mutex_lock(&f->mu);
    int n = atomic_load(&f->n);
    if (n >= EDGE_FEED_MAX_LISTENERS) {
        rv = EDGE_EBUSY;
    } else {
        /* Entries committed while nobody listened were not followed: start over from
         * what the database holds at the next dispatch. */
        if (n == 0 && atomic_load(&f->skipped)) f->cursor_set = false;
        f->l[n] = *l;
        atomic_store(&f->n, n + 1);
    }
    pthread_mutex_unlock(&f->mu);
    return rv;
}

void edge_feed_unlisten(struct edge_repl_state *st, void *ud)
{
    struct edge_repl_feed *f = &st->feed;
    pthread_mutex_lock(&f->mu);
    int n = atomic_load(&f->n), k = 0;
    for (int i = 0; i < n; i++) {
        if (f->l[i].ud != ud) f->l[k++] = f->l[i];
    }
    atomic_store(&f->n, k);
    pthread_mutex_unlock(&f->mu);
}

static void feed_reset_locked(struct edge_repl_feed *f)
{
    int n = atomic_load(&f->n);
    for (int i = 0; i < n; i++) {
        if (f->l[i].reset != NULL) f->l[i].reset(f->l[i].ud);
    }
}

void edge_feed_reset(struct edge_repl_state *st)
{
    struct edge_repl_feed *f = &st->feed;
    pthread_mutex_lock(&f->mu);
    feed_reset_locked(f);
    f->cursor_set = false;
    pthread_mutex_unlock(&f->mu);
}

/* ---------------------------------------------------------------------------------- */
/* The commit guard                                                                   */
/* ---------------------------------------------------------------------------------- */

void edge_feed_guard_set(struct edge_repl_state *st, const struct edge_feed_guard *g)
{
    if (g != NULL) {
        st->feed.guard = *g;
    } else {
        memset(&st->feed.guard, 0, sizeof(st->feed.guard));
    }
}

struct mark_ctx {
    struct edge_repl_feed *f;
    struct edge_feed_mark *m;
};

static void mark_one(void *ud, const char *table, size_t len)
{
    struct mark_ctx *x = ud;
    x->f->guard.mark(x->f->guard.ud, table, len, x->m);
}

void edge_feed_mark_capture(struct edge_repl_state *st, const struct edge_capture *cap, struct edge_feed_mark *m)
{
    struct edge_repl_feed *f = &st->feed;
    if (f->guard.mark == NULL || cap == NULL) return;
    struct mark_ctx x = {f, m};
    edge_capture_tables(cap, mark_one, &x);
}

void edge_feed_mark_all(struct edge_repl_state *st, struct edge_feed_mark *m)
{
    struct edge_repl_feed *f = &st->feed;
    if (f->guard.mark != NULL) f->guard.mark(f->guard.ud, NULL, 0, m);
}

void edge_feed_mark_entries(struct edge_repl_state *st, sqlite3 *db, const struct edge_repl_entry *entries,
                            size_t count, struct edge_feed_mark *m)
{
    struct edge_repl_feed *f = &st->feed;
    if (f->guard.mark == NULL || count == 0) return;
    if (edge__repl_schema_has(db, EDGE__Q_HAS_FKS)) {
        f->guard.mark(f->guard.ud, NULL, 0, m);
        return;
    }
    for (size_t i = 0; i < count && !m->all; i++) {
        struct edge_feed_op *ops = NULL;
        size_t n = 0;
        if (edge_feed_decode(NULL, entries[i].origin, entries[i].seq, entries[i].payload, entries[i].payload_len, &ops,
                             &n) != EDGE_OK) {
            f->guard.mark(f->guard.ud, NULL, 0, m); /* cannot tell: assume anything */
            break;
        }
        for (size_t k = 0; k < n; k++) {
            bool ddl = ops[k].kind == EDGE_FEED_DDL;
            f->guard.mark(f->guard.ud, ddl ? NULL : ops[k].table, ddl ? 0 : ops[k].table_len, m);
        }
        edge_free(ops);
    }
}

void edge_feed_unmark(struct edge_repl_state *st, struct edge_feed_mark *m)
{
    struct edge_repl_feed *f = &st->feed;
    if (f->guard.unmark != NULL && (m->all || m->n > 0)) f->guard.unmark(f->guard.ud, m);
    memset(m, 0, sizeof(*m));
}

/* ---------------------------------------------------------------------------------- */
/* Decoding                                                                           */
/* ---------------------------------------------------------------------------------- */

/* A column image (an op's row, or the "old" one before it): a count, the names, then the
 * values, each borrowed from the payload into c[0..n) (NULL in the counting pass). */
static int read_image(struct edge__rd *r, struct edge_feed_col *c, uint64_t *out_n)
{
    uint64_t n;
    if (edge__repl_get_varint(r, &n) != EDGE_OK || n > 65535) return EDGE_ECORRUPT;
    for (uint64_t k = 0; k < n; k++) {
        const char *name;
        size_t nl;
        if (edge__repl_get_str(r, &name, &nl) != EDGE_OK) return EDGE_ECORRUPT;
        if (c) {
            c[k].name = name;
            c[k].name_len = nl;
        }
    }
    for (uint64_t k = 0; k < n; k++) {
        size_t start = r->off;
        if (edge__repl_skip_value(r) != EDGE_OK) return EDGE_ECORRUPT;
        if (c) {
            c[k].val = r->p + start;
            c[k].val_len = r->off - start;
        }
    }
    *out_n = n;
    return EDGE_OK;
}

/* Walk the payload. Pass 1 (ops NULL) counts ops and columns; pass 2 fills. */
static int decode_pass(struct edge__rd r, const char *origin, uint64_t seq, struct edge_feed_op *ops,
                       struct edge_feed_col *cols, size_t *out_ops, size_t *out_cols)
{
    uint8_t version;
    uint64_t n_ops;
    if (edge__repl_get_u8(&r, &version) != EDGE_OK || version != EDGE_REPL_PAYLOAD_VERSION ||
        edge__repl_get_varint(&r, &n_ops) != EDGE_OK || n_ops > r.len) {
        return EDGE_ECORRUPT;
    }
    size_t nc = 0, j = 0;
    const struct edge_feed_col *old = NULL; /* an EDGE_REPL_OP_OLD for the next op */
    int nold = 0;
    for (uint64_t i = 0; i < n_ops; i++) {
        const char *table;
        size_t tl;
        uint8_t kind;
        if (edge__repl_get_str(&r, &table, &tl) != EDGE_OK || edge__repl_get_u8(&r, &kind) != EDGE_OK) {
            return EDGE_ECORRUPT;
        }
        if (kind == EDGE_REPL_OP_OLD) {
            /* not an op of its own: the image the next op's "old" is */
            uint64_t n;
            struct edge_feed_col *c = cols ? &cols[nc] : NULL;
            if (read_image(&r, c, &n) != EDGE_OK) return EDGE_ECORRUPT;
            old = c;
            nold = (int)n;
            nc += (size_t)n;
            continue;
        }
        struct edge_feed_op *op = ops ? &ops[j] : NULL;
        j++;
        if (op) {
            memset(op, 0, sizeof(*op));
            op->table = table;
            op->table_len = tl;
        }
        if (kind == EDGE_REPL_OP_DDL) {
            const char *sql;
            size_t sl;
            if (edge__repl_get_str(&r, &sql, &sl) != EDGE_OK) return EDGE_ECORRUPT;
            if (op) {
                op->kind = EDGE_FEED_DDL;
                op->sql = sql;
                op->sql_len = sl;
            }
            continue;
        }
        if (kind == EDGE_REPL_OP_CRDT) {
            const char *type, *delta;
            size_t tyl, dl;
            if (edge__repl_get_str(&r, &type, &tyl) != EDGE_OK || edge__repl_get_str(&r, &delta, &dl) != EDGE_OK) {
                return EDGE_ECORRUPT;
            }
            if (op) {
                op->kind = EDGE_FEED_CRDT;
                op->sql = type;
                op->sql_len = tyl;
            }
            continue;
        }
        /* A row with pn-counter differences (crdt_cols.c): the image is the origin's; a
         * region that merged the difference holds its own sum in those columns. */
        bool rowx = kind == EDGE_REPL_OP_ROWX;
        if (rowx) kind = EDGE_REPL_OP_ROW;
        if (kind != EDGE_REPL_OP_ROW && kind != EDGE_REPL_OP_DELETE) return EDGE_ECORRUPT;
        uint64_t n;
        struct edge_feed_col *c = cols ? &cols[nc] : NULL;
        if (read_image(&r, c, &n) != EDGE_OK) return EDGE_ECORRUPT;
        bool all_mine = true;
        if (kind == EDGE_REPL_OP_ROW) {
            size_t ol = strlen(origin);
            for (uint64_t k = 0; k < n; k++) {
                const char *so;
                size_t sol;
                uint64_t sseq, shlc;
                if (edge__repl_get_str(&r, &so, &sol) != EDGE_OK || edge__repl_get_varint(&r, &sseq) != EDGE_OK ||
                    edge__repl_get_varint(&r, &shlc) != EDGE_OK) {
                    return EDGE_ECORRUPT;
                }
                if (sseq != seq || sol != ol || memcmp(so, origin, ol) != 0) all_mine = false;
            }
        }
        if (rowx) {
            uint64_t nd, v;
            uint8_t dk;
            if (edge__repl_get_varint(&r, &nd) != EDGE_OK || nd > n) return EDGE_ECORRUPT;
            for (uint64_t k = 0; k < nd; k++) {
                const char *ds;
                size_t dl;
                if (edge__repl_get_varint(&r, &v) != EDGE_OK || edge__repl_get_u8(&r, &dk) != EDGE_OK ||
                    (dk == 2 ? edge__repl_get_str(&r, &ds, &dl) : edge__repl_get_varint(&r, &v)) != EDGE_OK) {
                    return EDGE_ECORRUPT;
                }
            }
        }
        if (op) {
            op->kind = kind == EDGE_REPL_OP_DELETE ? EDGE_FEED_DELETE : all_mine ? EDGE_FEED_INSERT : EDGE_FEED_UPDATE;
            op->ncols = (int)n;
            op->cols = c;
            op->old = old;
            op->nold = nold;
            /* the origin had the row: its update, whatever the stamps say (a row written
             * before replication had none) */
            if (old != NULL && op->kind == EDGE_FEED_INSERT) op->kind = EDGE_FEED_UPDATE;
        }
        old = NULL;
        nold = 0;
        nc += (size_t)n;
    }
    *out_ops = j;
    *out_cols = nc;
    return EDGE_OK;
}

/* Hash of an op's table and key values (FNV-1a). */
static uint64_t op_key_hash(const struct edge_feed_op *op)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < op->table_len; i++) h = (h ^ (uint8_t)(op->table[i] | 0x20)) * 1099511628211ull;
    for (int k = 0; k < op->npk; k++) {
        const struct edge_feed_col *c = &op->cols[op->pk[k]];
        for (size_t i = 0; i < c->val_len; i++) h = (h ^ c->val[i]) * 1099511628211ull;
    }
    return h;
}

static bool op_same_key(const struct edge_feed_op *a, const struct edge_feed_op *b)
{
    if (a->npk != b->npk || a->table_len != b->table_len || strncasecmp(a->table, b->table, a->table_len) != 0) {
        return false;
    }
    for (int k = 0; k < a->npk; k++) {
        const struct edge_feed_col *x = &a->cols[a->pk[k]], *y = &b->cols[b->pk[k]];
        if (x->val_len != y->val_len || memcmp(x->val, y->val, x->val_len) != 0) return false;
    }
    return true;
}

/* The stamps say "insert" for every write of a row created in the same entry (they all
 * carry the entry's stamp): a later write of a key the entry already wrote is an update,
 * unless the entry deleted it in between. */
static void fix_kinds(struct edge_feed_op *ops, size_t n)
{
    if (n < 2) return;
    size_t cap = 16;
    while (cap < n * 2) cap *= 2;
    size_t *slot = edge_calloc(cap, sizeof(*slot)); /* index + 1 of the last op of a key; 0 = empty */
    if (slot == NULL) return;
    for (size_t i = 0; i < n; i++) {
        struct edge_feed_op *op = &ops[i];
        if ((op->kind != EDGE_FEED_INSERT && op->kind != EDGE_FEED_UPDATE && op->kind != EDGE_FEED_DELETE) ||
            op->npk == 0) {
            continue;
        }
        size_t at = (size_t)(op_key_hash(op) & (cap - 1));
        while (slot[at] != 0 && !op_same_key(&ops[slot[at] - 1], op)) at = (at + 1) & (cap - 1);
        if (slot[at] != 0 && op->kind == EDGE_FEED_INSERT && ops[slot[at] - 1].kind != EDGE_FEED_DELETE) {
            op->kind = EDGE_FEED_UPDATE;
        }
        slot[at] = i + 1;
    }
    edge_free(slot);
}

int edge_feed_decode(sqlite3 *db, const char *origin, uint64_t seq, const uint8_t *payload, size_t len,
                     struct edge_feed_op **out_ops, size_t *out_n)
{
    *out_ops = NULL;
    *out_n = 0;
    struct edge__rd r = {payload, len, 0};
    size_t n_ops = 0, n_cols = 0;
    int rv = decode_pass(r, origin, seq, NULL, NULL, &n_ops, &n_cols);
    if (rv != EDGE_OK) return rv;
    /* ops, then columns, then one key index per column (a key is never wider). */
    size_t sz = n_ops * sizeof(struct edge_feed_op) + n_cols * sizeof(struct edge_feed_col) + n_cols * sizeof(int);
    char *mem = edge_calloc(1, sz ? sz : 1);
    if (mem == NULL) return EDGE_ENOMEM;
    struct edge_feed_op *ops = (struct edge_feed_op *)(void *)mem;
    struct edge_feed_col *cols = (struct edge_feed_col *)(void *)(mem + n_ops * sizeof(*ops));
    int *pkidx = (int *)(void *)(mem + n_ops * sizeof(*ops) + n_cols * sizeof(*cols));
    rv = decode_pass(r, origin, seq, ops, cols, &n_ops, &n_cols);
    if (rv != EDGE_OK) {
        edge_free(mem);
        return rv;
    }
    /* Key columns: a delete names exactly them; a row's come from the table's schema. */
    struct edge__tinfo ti;
    memset(&ti, 0, sizeof(ti));
    bool have = false;
    for (size_t i = 0; i < n_ops; i++) {
        struct edge_feed_op *op = &ops[i];
        int *pk = pkidx + (op->cols - cols);
        if (op->kind == EDGE_FEED_DDL) continue;
        op->pk = pk;
        if (op->kind == EDGE_FEED_DELETE) {
            for (int k = 0; k < op->ncols; k++) pk[k] = k;
            op->npk = op->ncols;
            continue;
        }
        if (db == NULL || op->table_len >= sizeof(ti.name)) continue;
        if (!have || strlen(ti.name) != op->table_len || strncmp(ti.name, op->table, op->table_len) != 0) {
            char name[256];
            memcpy(name, op->table, op->table_len);
            name[op->table_len] = '\0';
            edge__tinfo_free(&ti);
            memset(&ti, 0, sizeof(ti));
            have = edge__tinfo_load(db, name, &ti) == EDGE_OK;
            if (have) snprintf(ti.name, sizeof(ti.name), "%s", name);
        }
        if (!have) continue;
        int npk = 0;
        for (int k = 0; k < ti.pk.npk; k++) {
            const char *cn = ti.cols[ti.pk.pk[k]];
            size_t cl = strlen(cn);
            for (int j = 0; j < op->ncols; j++) {
                if (op->cols[j].name_len == cl && strncasecmp(op->cols[j].name, cn, cl) == 0) {
                    pk[npk++] = j;
                    break;
                }
            }
        }
        op->npk = npk == ti.pk.npk ? npk : 0;
    }
    edge__tinfo_free(&ti);
    fix_kinds(ops, n_ops);
    *out_ops = ops;
    *out_n = n_ops;
    return EDGE_OK;
}

int edge_feed_value_json(const uint8_t *p, size_t len, struct edge_buf *out)
{
    struct edge__rd r = {p, len, 0};
    uint8_t t;
    if (edge__repl_get_u8(&r, &t) != EDGE_OK) return EDGE_ECORRUPT;
    switch (t) {
    case 0: return edge_buf_puts(out, "null");
    case 1: {
        uint64_t z;
        if (edge__repl_get_varint(&r, &z) != EDGE_OK) return EDGE_ECORRUPT;
        int64_t i = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
        return edge_buf_printf(out, "%lld", (long long)i);
    }
    case 2: {
        if (r.len - r.off < 8) return EDGE_ECORRUPT;
        uint64_t bits = 0;
        for (int k = 0; k < 8; k++) bits |= (uint64_t)r.p[r.off + (size_t)k] << (8 * k);
        double d;
        memcpy(&d, &bits, 8);
        if (!isfinite(d)) return edge_buf_puts(out, "null");
        return edge_buf_json_double(out, d);
    }
    case 3:
    case 4: {
        const char *s;
        size_t n;
        if (edge__repl_get_str(&r, &s, &n) != EDGE_OK) return EDGE_ECORRUPT;
        if (t == 3) return edge_buf_json_str(out, s, n);
        int rv = edge_buf_puts(out, "{\"base64\":\"");
        if (rv == EDGE_OK) rv = edge_buf_base64(out, (const uint8_t *)s, n);
        if (rv == EDGE_OK) rv = edge_buf_puts(out, "\"}");
        return rv;
    }
    default: return EDGE_ECORRUPT;
    }
}

int edge_feed_row_json(const struct edge_feed_op *op, struct edge_buf *out)
{
    int rv = edge_buf_putc(out, '{');
    for (int i = 0; i < op->ncols && rv == EDGE_OK; i++) {
        if (i > 0) rv = edge_buf_putc(out, ',');
        if (rv == EDGE_OK) rv = edge_buf_json_str(out, op->cols[i].name, op->cols[i].name_len);
        if (rv == EDGE_OK) rv = edge_buf_putc(out, ':');
        if (rv == EDGE_OK) rv = edge_feed_value_json(op->cols[i].val, op->cols[i].val_len, out);
    }
    if (rv == EDGE_OK) rv = edge_buf_putc(out, '}');
    return rv;
}

int edge_feed_pk_json(const struct edge_feed_op *op, struct edge_buf *out)
{
    if (op->npk == 0) return edge_buf_puts(out, "null");
    if (op->npk == 1) return edge_feed_value_json(op->cols[op->pk[0]].val, op->cols[op->pk[0]].val_len, out);
    int rv = edge_buf_putc(out, '[');
    for (int i = 0; i < op->npk && rv == EDGE_OK; i++) {
        if (i > 0) rv = edge_buf_putc(out, ',');
        if (rv == EDGE_OK) rv = edge_feed_value_json(op->cols[op->pk[i]].val, op->cols[op->pk[i]].val_len, out);
    }
    if (rv == EDGE_OK) rv = edge_buf_putc(out, ']');
    return rv;
}

const struct edge_feed_col *edge_feed_col_find(const struct edge_feed_op *op, const char *name)
{
    size_t nl = strlen(name);
    for (int i = 0; i < op->ncols; i++) {
        if (op->cols[i].name_len == nl && strncasecmp(op->cols[i].name, name, nl) == 0) return &op->cols[i];
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------- */
/* Dispatch                                                                           */
/* ---------------------------------------------------------------------------------- */

static int pending_cmp(const void *a, const void *b)
{
    const struct edge__feed_pending *x = a, *y = b;
    if (x->hlc != y->hlc) return x->hlc < y->hlc ? -1 : 1;
    int c = strcmp(x->origin, y->origin);
    if (c != 0) return c;
    return x->seq < y->seq ? -1 : x->seq > y->seq ? 1 : 0;
}

/* The next pending entry, read from the log row s is on (seq, hlc, consistency,
 * payload), at pend[*np]; the array grows as needed. *np is not advanced. NULL when out
 * of memory. */
static struct edge__feed_pending *pending_add(struct edge__feed_pending **pend, size_t *np, size_t *cap, const char *origin,
                                   sqlite3_stmt *s)
{
    if (*np == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        struct edge__feed_pending *g = edge_realloc(*pend, nc * sizeof(**pend));
        if (g == NULL) return NULL;
        *pend = g;
        *cap = nc;
    }
    struct edge__feed_pending *p = &(*pend)[*np];
    memset(p, 0, sizeof(*p));
    snprintf(p->origin, sizeof(p->origin), "%s", origin);
    p->seq = (uint64_t)sqlite3_column_int64(s, 0);
    p->hlc = (uint64_t)sqlite3_column_int64(s, 1);
    p->consistency = sqlite3_column_int(s, 2);
    p->len = (size_t)sqlite3_column_bytes(s, 3);
    p->payload = edge__feed_dup_blob(sqlite3_column_blob(s, 3), p->len);
    return p->payload != NULL ? p : NULL;
}

/* One pass: read up to FEED_PASS_MAX entries past the cursor, deliver them. Returns
 * true when more may be waiting. When an origin's range was cut by the bound, only the
 * entries stamped up to the last one read of every cut origin go out: an entry that
 * depends on one not read yet always stamps later, so the causal order holds across
 * passes. */
static bool dispatch_pass(struct edge_repl_feed *f, sqlite3 *db)
{
    struct edge_vclock vv;
    edge_vclock_init(&vv);
    struct edge__feed_pending *pend = NULL;
    size_t np = 0, cap = 0;
    bool more = false, gap = false;
    uint64_t cut_hlc = UINT64_MAX;
    if (edge_repl_vv_load(db, &vv) != EDGE_OK) goto out;
    if (!f->cursor_set) {
        edge_vclock_close(&f->cursor);
        edge_vclock_init(&f->cursor);
        edge_vclock_copy(&f->cursor, &vv);
        f->cursor_set = true;
        goto out;
    }
    static const char q[] = "SELECT seq, hlc, consistency, payload FROM _edge_log WHERE origin = ?1 AND seq > ?2"
                            " AND seq <= ?3 ORDER BY seq LIMIT ?4";
    sqlite3_stmt *s = edge__repl_stmt(db, q, sizeof(q) - 1);
    if (s == NULL) goto out;
    for (size_t i = 0; i < vv.n_entries; i++) {
        const char *o = vv.entries[i].region;
        uint64_t from = edge_vclock_get(&f->cursor, o), to = vv.entries[i].n;
        if (to <= from) continue;
        if (np >= FEED_PASS_MAX) {
            more = true;
            continue;
        }
        sqlite3_bind_text(s, 1, o, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, (sqlite3_int64)from);
        sqlite3_bind_int64(s, 3, (sqlite3_int64)to);
        sqlite3_bind_int64(s, 4, (sqlite3_int64)(FEED_PASS_MAX - np));
        uint64_t expect = from + 1, last = from, last_hlc = 0;
        bool failed = false;
        while (sqlite3_step(s) == SQLITE_ROW) {
            struct edge__feed_pending *p = pending_add(&pend, &np, &cap, o, s);
            if (p == NULL) {
                failed = true;
                break;
            }
            if (p->seq != expect) gap = true; /* compacted before the feed read it */
            expect = p->seq + 1;
            last = p->seq;
            last_hlc = p->hlc;
            np++;
        }
        edge__repl_done(s);
        if (last < to && (failed || np >= FEED_PASS_MAX)) {
            /* cut: the rest of this origin waits for the next pass */
            more = true;
            if (last == from) continue;
            if (last_hlc < cut_hlc) cut_hlc = last_hlc;
        } else if (last < to && last == from) {
            gap = true; /* nothing left of them in the log */
            edge_vclock_set(&f->cursor, o, to);
        }
    }
    if (gap) {
        EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_REPL, "change feed: entries left the log before they were delivered");
        feed_reset_locked(f);
    }
    for (size_t i = 0; i < np; i++) {
        if (edge_feed_decode(db, pend[i].origin, pend[i].seq, pend[i].payload, pend[i].len, &pend[i].ops,
                             &pend[i].n_ops) != EDGE_OK) {
            pend[i].ops = NULL;
            pend[i].n_ops = 0;
        }
    }
    if (np > 1) qsort(pend, np, sizeof(*pend), pending_cmp);
    struct edge__feed_conflicts conflicts;
    edge__feed_conflicts_attach(db, &f->cursor, pend, np, &conflicts);
    int nl = atomic_load(&f->n);
    size_t sent = 0;
    for (size_t i = 0; i < np && pend[i].hlc <= cut_hlc; i++, sent++) {
        struct edge_feed_entry e = {pend[i].origin, pend[i].seq,    pend[i].hlc, pend[i].consistency,
                                    pend[i].payload, pend[i].len, pend[i].ops, pend[i].n_ops};
        for (int k = 0; k < nl; k++) f->l[k].entry(f->l[k].ud, &e);
        edge_vclock_set(&f->cursor, pend[i].origin, pend[i].seq);
    }
    if (!more) {
        edge_vclock_close(&f->cursor);
        edge_vclock_init(&f->cursor);
        edge_vclock_copy(&f->cursor, &vv); /* also steps over what compaction took */
    }
    atomic_fetch_add(&f->delivered, sent);
    edge__feed_conflicts_free(&conflicts);
out:
    for (size_t i = 0; i < np; i++) {
        edge_free(pend[i].payload);
        edge_free(pend[i].ops);
    }
    edge_free(pend);
    edge_vclock_close(&vv);
    return more;
}

int edge_feed_open(struct edge_repl_state *st, sqlite3 *db)
{
    struct edge_repl_feed *f = &st->feed;
    pthread_mutex_lock(&f->mu);
    f->cursor_set = false;
    dispatch_pass(f, db); /* with the cursor unset, a pass only places it */
    atomic_store(&f->skipped, false);
    pthread_mutex_unlock(&f->mu);
    return f->cursor_set ? EDGE_OK : EDGE_ESTORE;
}

void edge_feed_dispatch(struct edge_repl_state *st, sqlite3 *db)
{
    struct edge_repl_feed *f = &st->feed;
    if (atomic_load_explicit(&f->n, memory_order_acquire) == 0) {
        atomic_store(&f->skipped, true);
        return;
    }
    if (f->test_delay_ms > 0) {
        struct timespec ts = {f->test_delay_ms / 1000, (long)(f->test_delay_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    pthread_mutex_lock(&f->mu);
    for (int pass = 0; pass < 1000 && atomic_load(&f->n) > 0; pass++) {
        if (!dispatch_pass(f, db)) break;
    }
    pthread_mutex_unlock(&f->mu);
}

int edge_feed_read(sqlite3 *db, struct edge_vclock *pos, const struct edge_vclock *to, size_t max,
                   void (*cb)(void *ud, const struct edge_feed_entry *e), void *ud, bool *out_gap, bool *out_more)
{
    *out_gap = false;
    *out_more = false;
    if (max == 0) max = 1;
    struct edge__feed_pending *pend = NULL;
    size_t np = 0, cap = 0;
    uint64_t cut_hlc = UINT64_MAX;
    int rv = EDGE_OK;
    static const char q[] = "SELECT seq, hlc, consistency, payload FROM _edge_log WHERE origin = ?1 AND seq > ?2"
                            " AND seq <= ?3 ORDER BY seq LIMIT ?4";
    sqlite3_stmt *s = edge__repl_stmt(db, q, sizeof(q) - 1);
    if (s == NULL) return EDGE_ESTORE;
    for (size_t i = 0; i < to->n_entries && rv == EDGE_OK; i++) {
        const char *o = to->entries[i].region;
        uint64_t from = edge_vclock_get(pos, o), upto = to->entries[i].n;
        if (upto <= from) continue;
        if (np >= max) {
            *out_more = true;
            continue;
        }
        sqlite3_bind_text(s, 1, o, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, (sqlite3_int64)from);
        sqlite3_bind_int64(s, 3, (sqlite3_int64)upto);
        sqlite3_bind_int64(s, 4, (sqlite3_int64)(max - np));
        uint64_t last = from, last_hlc = 0;
        bool first = true, gap = false;
        int rc;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            uint64_t seq = (uint64_t)sqlite3_column_int64(s, 0);
            if (first && seq != from + 1) {
                gap = true;
                break;
            }
            first = false;
            struct edge__feed_pending *p = pending_add(&pend, &np, &cap, o, s);
            if (p == NULL) {
                rv = EDGE_ENOMEM;
                break;
            }
            last = seq;
            last_hlc = p->hlc;
            np++;
        }
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) rv = EDGE_ESTORE;
        edge__repl_done(s);
        if (rv != EDGE_OK) break;
        if (gap || (first && last < upto)) {
            *out_gap = true; /* compacted: the caller must start over */
            break;
        }
        if (last < upto) {
            *out_more = true;
            if (last_hlc < cut_hlc) cut_hlc = last_hlc;
        }
    }
    if (rv == EDGE_OK && !*out_gap) {
        for (size_t i = 0; i < np; i++) {
            if (edge_feed_decode(db, pend[i].origin, pend[i].seq, pend[i].payload, pend[i].len, &pend[i].ops,
                                 &pend[i].n_ops) != EDGE_OK) {
                pend[i].ops = NULL;
                pend[i].n_ops = 0;
            }
        }
        if (np > 1) qsort(pend, np, sizeof(*pend), pending_cmp);
        struct edge__feed_conflicts conflicts;
        edge__feed_conflicts_attach(db, pos, pend, np, &conflicts);
        for (size_t i = 0; i < np && pend[i].hlc <= cut_hlc; i++) {
            struct edge_feed_entry e = {pend[i].origin, pend[i].seq,    pend[i].hlc, pend[i].consistency,
                                        pend[i].payload, pend[i].len, pend[i].ops, pend[i].n_ops};
            cb(ud, &e);
            edge_vclock_set(pos, pend[i].origin, pend[i].seq);
        }
        edge__feed_conflicts_free(&conflicts);
    }
    for (size_t i = 0; i < np; i++) {
        edge_free(pend[i].payload);
        edge_free(pend[i].ops);
    }
    edge_free(pend);
    return rv;
}

int edge_repl_row_version(sqlite3 *db, const char *table, const char *const *pkcols, int npk,
                          sqlite3_value *const *keys, char *origin, size_t origin_len, uint64_t *seq)
{
    struct edge_buf q, pk;
    edge_buf_init(&q, 1 << 16);
    edge_buf_init(&pk, 1 << 20);
    int rv = npk > 0 ? edge_buf_puts(&q, "SELECT ") : EDGE_EINVAL;
    for (int i = 0; i < npk && rv == EDGE_OK; i++) {
        if (i > 0) rv = edge_buf_putc(&q, ',');
        if (rv == EDGE_OK) rv = edge_store_quote_ident(&q, pkcols[i]);
    }
    if (rv == EDGE_OK) rv = edge_buf_puts(&q, " FROM ");
    if (rv == EDGE_OK) rv = edge_store_quote_ident(&q, table);
    for (int i = 0; i < npk && rv == EDGE_OK; i++) {
        rv = edge_buf_puts(&q, i ? " AND " : " WHERE ");
        if (rv == EDGE_OK) rv = edge_store_quote_ident(&q, pkcols[i]);
        if (rv == EDGE_OK) rv = edge_buf_printf(&q, " = ?%d", i + 1);
    }
    if (rv == EDGE_OK) rv = edge_buf_putc(&q, '\0');
    sqlite3_stmt *s = NULL;
    if (rv == EDGE_OK && sqlite3_prepare_v2(db, q.data, -1, &s, NULL) != SQLITE_OK) rv = EDGE_ESTORE;
    if (rv == EDGE_OK) {
        for (int i = 0; i < npk; i++) sqlite3_bind_value(s, i + 1, keys[i]);
        /* the key as the table stores it (its affinity applied), encoded as capture does:
         * the values of the key columns in key order, one after the other */
        rv = sqlite3_step(s) == SQLITE_ROW ? EDGE_OK : EDGE_ENOTFOUND;
        for (int i = 0; i < npk && rv == EDGE_OK; i++) rv = edge__repl_put_value(&pk, sqlite3_column_value(s, i));
    }
    sqlite3_finalize(s);
    s = NULL;
    if (rv == EDGE_OK &&
        sqlite3_prepare_v2(db, "SELECT origin, seq FROM _edge_rows WHERE tbl = ?1 AND pk = ?2", -1, &s, NULL) != SQLITE_OK) {
        rv = EDGE_ESTORE;
    }
    if (rv == EDGE_OK) {
        sqlite3_bind_text(s, 1, table, -1, SQLITE_STATIC);
        sqlite3_bind_blob64(s, 2, pk.data ? pk.data : "", pk.len, SQLITE_STATIC);
        if (sqlite3_step(s) == SQLITE_ROW) {
            snprintf(origin, origin_len, "%s", (const char *)sqlite3_column_text(s, 0));
            *seq = (uint64_t)sqlite3_column_int64(s, 1);
        } else {
            rv = EDGE_ENOTFOUND;
        }
    }
    sqlite3_finalize(s);
    edge_buf_free(&q);
    edge_buf_free(&pk);
    return rv;
}
