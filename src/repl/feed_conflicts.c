/* SPDX-License-Identifier: MIT */
/* The change feed: conflicts recorded in _edge_conflicts, attached to the op of the
 * version of the pair that a reader receives second (see feed_int.h). Looked up by the
 * entries read, through the indexes on (winner_origin, winner_seq) and (loser_origin,
 * loser_seq), so the live dispatch and a catch-up from the log find the same ones. */
#include "repl/feed_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "repl/repl_int.h"

/* Conflict rows read per pass at most: a pass of entries that all conflicted attaches
 * the first ones and says nothing about the rest (the feed never blocks on them). */
#define FEED_CONFLICTS_MAX 10000

struct edge__feed_conflict_row {
    int64_t id;
    struct edge_feed_conflict c;
    char tbl[256];
    uint8_t *pk;
    size_t pk_len;
    char winner[EDGE_VCLOCK_REGION_MAX + 1], loser[EDGE_VCLOCK_REGION_MAX + 1], kind[32];
    uint8_t *image;
};

/* Does op's key encode to pk (the concatenated values, as _edge_conflicts.pk)? */
static bool op_has_pk(const struct edge_feed_op *op, const char *tbl, const uint8_t *pk, size_t pk_len)
{
    if (op->kind == EDGE_FEED_DDL || op->kind == EDGE_FEED_CRDT || op->npk == 0) return false;
    if (strlen(tbl) != op->table_len || strncasecmp(tbl, op->table, op->table_len) != 0) return false;
    size_t off = 0;
    for (int i = 0; i < op->npk; i++) {
        const struct edge_feed_col *c = &op->cols[op->pk[i]];
        if (off + c->val_len > pk_len || memcmp(pk + off, c->val, c->val_len) != 0) return false;
        off += c->val_len;
    }
    return off == pk_len;
}

/* Index in pend of version (origin, seq, hlc), or -1. pend is sorted by hlc first. */
static long find_pending(const struct edge__feed_pending *pend, size_t np, const char *origin, uint64_t seq,
                         uint64_t hlc)
{
    size_t lo = 0, hi = np;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (pend[mid].hlc < hlc) lo = mid + 1;
        else hi = mid;
    }
    for (size_t i = lo; i < np && pend[i].hlc == hlc; i++) {
        if (pend[i].seq == seq && strcmp(pend[i].origin, origin) == 0) return (long)i;
    }
    return -1;
}

/* A version the reader already has: covered by its position, or no version at all (the
 * "winner" of a foreign-key conflict is the missing parent). */
static bool covered(const struct edge_vclock *before, const char *origin, uint64_t seq)
{
    return origin[0] == '\0' || seq <= edge_vclock_get(before, origin);
}

static int row_cmp(const void *a, const void *b)
{
    const struct edge__feed_conflict_row *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id ? 1 : 0;
}

static void row_free(struct edge__feed_conflict_row *r)
{
    edge_free(r->pk);
    edge_free(r->image);
}

/* Read the conflict rows of which either version is an entry of origin with seq in
 * [lo, hi], appending to *rows. */
static void read_rows(sqlite3 *db, const char *origin, uint64_t lo, uint64_t hi, struct edge__feed_conflict_row **rows,
                      size_t *n, size_t *cap)
{
    static const char q[] =
        "SELECT id, tbl, pk, winner_origin, winner_seq, winner_hlc, loser_origin, loser_seq, loser_hlc,"
        " loser_deleted, loser_image, kind FROM _edge_conflicts WHERE winner_origin = ?1 AND winner_seq BETWEEN ?2 AND ?3"
        " UNION SELECT id, tbl, pk, winner_origin, winner_seq, winner_hlc, loser_origin, loser_seq, loser_hlc,"
        " loser_deleted, loser_image, kind FROM _edge_conflicts WHERE loser_origin = ?1 AND loser_seq BETWEEN ?2 AND ?3"
        " ORDER BY 1 LIMIT ?4";
    if (*n >= FEED_CONFLICTS_MAX) return;
    sqlite3_stmt *s = edge__repl_stmt(db, q, sizeof(q) - 1);
    if (s == NULL) return;
    sqlite3_bind_text(s, 1, origin, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)lo);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)hi);
    sqlite3_bind_int64(s, 4, (sqlite3_int64)(FEED_CONFLICTS_MAX - *n));
    while (sqlite3_step(s) == SQLITE_ROW) {
        if (*n == *cap) {
            size_t nc = *cap ? *cap * 2 : 8;
            struct edge__feed_conflict_row *g = edge_realloc(*rows, nc * sizeof(**rows));
            if (g == NULL) break;
            *rows = g;
            *cap = nc;
        }
        struct edge__feed_conflict_row *r = &(*rows)[*n];
        memset(r, 0, sizeof(*r));
        r->id = sqlite3_column_int64(s, 0);
        snprintf(r->tbl, sizeof(r->tbl), "%s", (const char *)sqlite3_column_text(s, 1));
        r->pk_len = (size_t)sqlite3_column_bytes(s, 2);
        r->pk = edge__feed_dup_blob(sqlite3_column_blob(s, 2), r->pk_len);
        snprintf(r->winner, sizeof(r->winner), "%s", (const char *)sqlite3_column_text(s, 3));
        snprintf(r->loser, sizeof(r->loser), "%s", (const char *)sqlite3_column_text(s, 6));
        const unsigned char *kind = sqlite3_column_text(s, 11);
        snprintf(r->kind, sizeof(r->kind), "%s", kind ? (const char *)kind : "row");
        r->c.loser_image_len = (size_t)sqlite3_column_bytes(s, 10);
        r->image = edge__feed_dup_blob(sqlite3_column_blob(s, 10), r->c.loser_image_len);
        r->c.winner_seq = (uint64_t)sqlite3_column_int64(s, 4);
        r->c.winner_hlc = (uint64_t)sqlite3_column_int64(s, 5);
        r->c.loser_seq = (uint64_t)sqlite3_column_int64(s, 7);
        r->c.loser_hlc = (uint64_t)sqlite3_column_int64(s, 8);
        r->c.loser_deleted = sqlite3_column_int(s, 9) != 0;
        if (r->pk == NULL || r->image == NULL) {
            row_free(r);
            continue;
        }
        (*n)++;
    }
    edge__repl_done(s);
}

void edge__feed_conflicts_attach(sqlite3 *db, const struct edge_vclock *before, struct edge__feed_pending *pend,
                                 size_t np, struct edge__feed_conflicts *out)
{
    out->rows = NULL;
    out->n = 0;
    if (np == 0) return;
    /* The seq range of each origin in pend. */
    struct edge_vclock lo, hi;
    edge_vclock_init(&lo);
    edge_vclock_init(&hi);
    for (size_t i = 0; i < np; i++) {
        uint64_t l = edge_vclock_get(&lo, pend[i].origin);
        if (l == 0 || pend[i].seq < l) edge_vclock_set(&lo, pend[i].origin, pend[i].seq);
        if (pend[i].seq > edge_vclock_get(&hi, pend[i].origin)) edge_vclock_set(&hi, pend[i].origin, pend[i].seq);
    }
    struct edge__feed_conflict_row *rows = NULL;
    size_t n = 0, cap = 0;
    for (size_t i = 0; i < hi.n_entries; i++) {
        const char *o = hi.entries[i].region;
        read_rows(db, o, edge_vclock_get(&lo, o), hi.entries[i].n, &rows, &n, &cap);
    }
    edge_vclock_close(&lo);
    edge_vclock_close(&hi);
    /* A conflict between two entries of pend of different origins was read twice. */
    if (n > 1) qsort(rows, n, sizeof(*rows), row_cmp);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (k > 0 && rows[k - 1].id == rows[i].id) {
            row_free(&rows[i]);
            continue;
        }
        rows[k++] = rows[i];
    }
    n = k;
    /* rows[] is final now: pointers into it are stable. */
    for (size_t i = 0; i < n; i++) {
        struct edge__feed_conflict_row *r = &rows[i];
        r->c.winner_origin = r->winner;
        r->c.loser_origin = r->loser;
        r->c.loser_image = r->image;
        r->c.kind = r->kind;
        long iw = find_pending(pend, np, r->winner, r->c.winner_seq, r->c.winner_hlc);
        long il = find_pending(pend, np, r->loser, r->c.loser_seq, r->c.loser_hlc);
        long at = -1;
        if (iw >= 0 && il >= 0) at = iw > il ? iw : il;
        else if (iw >= 0 && covered(before, r->loser, r->c.loser_seq)) at = iw;
        else if (il >= 0 && covered(before, r->winner, r->c.winner_seq)) at = il;
        if (at < 0) continue; /* its other version is not read yet: it carries the conflict */
        struct edge__feed_pending *p = &pend[at];
        for (size_t j = 0; j < p->n_ops; j++) {
            if (p->ops[j].conflict == NULL && op_has_pk(&p->ops[j], r->tbl, r->pk, r->pk_len)) {
                p->ops[j].conflict = &r->c;
                r->c.this_won = at == iw;
            }
        }
    }
    out->rows = rows;
    out->n = n;
}

void edge__feed_conflicts_free(struct edge__feed_conflicts *c)
{
    for (size_t i = 0; i < c->n; i++) row_free(&c->rows[i]);
    edge_free(c->rows);
    c->rows = NULL;
    c->n = 0;
}
