/* SPDX-License-Identifier: MIT */
/* Row metadata (_edge_rows): per row, the stamp of the write that last decided whether
 * it exists, a stamp per column, and for a deleted row the values it had.
 *
 * DESIGN
 * A replicated row is a small state-based CRDT: an LWW register for its existence and
 * one LWW register per column, ordered by the stamps (hlc, origin, seq) of the writes.
 * Every row operation carries the full row image and the stamp of every column, so
 * merging is a pointwise max: commutative, associative, idempotent, and therefore the
 * same in every region whatever order entries arrive in. Two concurrent writes to
 * different columns both survive; to the same column, the later stamp wins. A delete
 * keeps the row's values in the tombstone so a concurrent, later write to one column
 * can bring the row back with every other column as it should be. */
#include "repl/repl_int.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"

int edge__stamp_cmp(const struct edge__stamp *a, const struct edge__stamp *b)
{
    if (a->hlc != b->hlc) return a->hlc < b->hlc ? -1 : 1;
    int c = strcmp(a->origin, b->origin);
    if (c != 0) return c < 0 ? -1 : 1;
    if (a->seq != b->seq) return a->seq < b->seq ? -1 : 1;
    return 0;
}

int edge__stamps_encode(struct edge_buf *b, const struct edge__stamp *s, int n)
{
    int rv = EDGE_OK;
    for (int i = 0; i < n && rv == EDGE_OK; i++) {
        rv = edge__repl_put_str(b, s[i].origin, strlen(s[i].origin));
        if (rv == EDGE_OK) rv = edge__uvarint_put(b, s[i].seq);
        if (rv == EDGE_OK) rv = edge__uvarint_put(b, s[i].hlc);
    }
    return rv;
}

int edge__stamps_decode(struct edge__rd *r, struct edge__stamp *s, int n)
{
    for (int i = 0; i < n; i++) {
        const char *o;
        size_t ol;
        if (edge__repl_get_str(r, &o, &ol) != EDGE_OK || ol > EDGE_VCLOCK_REGION_MAX) return EDGE_ECORRUPT;
        memcpy(s[i].origin, o, ol);
        s[i].origin[ol] = '\0';
        if (edge__repl_get_varint(r, &s[i].seq) != EDGE_OK || edge__repl_get_varint(r, &s[i].hlc) != EDGE_OK) {
            return EDGE_ECORRUPT;
        }
    }
    return EDGE_OK;
}

void edge__meta_free(struct edge__rowmeta *m)
{
    edge_free(m->cols);
    edge_free(m->image);
    memset(m, 0, sizeof(*m));
}

int edge__meta_get(sqlite3 *db, const char *table, const void *pk, size_t pklen, int ncols, struct edge__rowmeta *m)
{
    memset(m, 0, sizeof(*m));
    m->ncols = ncols;
    m->cols = edge_calloc((size_t)(ncols > 0 ? ncols : 1), sizeof(*m->cols));
    if (m->cols == NULL) return EDGE_ENOMEM;
    static const char q[] = "SELECT origin, seq, hlc, deleted, cols, image FROM _edge_rows WHERE tbl = ?1 AND pk = ?2";
    sqlite3_stmt *st = edge__repl_stmt(db, q, sizeof(q) - 1);
    if (st == NULL) return EDGE_ESTORE;
    sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
    sqlite3_bind_blob64(st, 2, pk, pklen, SQLITE_STATIC);
    int rv = EDGE_OK;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        m->found = true;
        snprintf(m->exist.origin, sizeof(m->exist.origin), "%s", (const char *)sqlite3_column_text(st, 0));
        m->exist.seq = (uint64_t)sqlite3_column_int64(st, 1);
        m->exist.hlc = (uint64_t)sqlite3_column_int64(st, 2);
        m->deleted = sqlite3_column_int(st, 3) != 0;
        const uint8_t *cb = sqlite3_column_blob(st, 4);
        int cl = sqlite3_column_bytes(st, 4);
        if (cb != NULL && cl > 0) {
            struct edge__rd r = {cb, (size_t)cl, 0};
            uint64_t n;
            /* A table whose shape changed keeps no column stamps (all start over). */
            if (edge__repl_get_varint(&r, &n) == EDGE_OK && n == (uint64_t)ncols &&
                edge__stamps_decode(&r, m->cols, ncols) != EDGE_OK) {
                memset(m->cols, 0, (size_t)ncols * sizeof(*m->cols));
            }
        }
        const uint8_t *ib = sqlite3_column_blob(st, 5);
        int il = sqlite3_column_bytes(st, 5);
        if (ib != NULL && il > 0) {
            m->image = edge_malloc((size_t)il);
            if (m->image == NULL) {
                rv = EDGE_ENOMEM;
            } else {
                memcpy(m->image, ib, (size_t)il);
                m->image_len = (size_t)il;
            }
        }
    } else if (rc != SQLITE_DONE) {
        rv = EDGE_ESTORE;
    }
    edge__repl_done(st);
    return rv;
}

int edge__meta_put(sqlite3 *db, const char *table, const void *pk, size_t pklen, const struct edge__rowmeta *m)
{
    struct edge_buf cols;
    edge_buf_init(&cols, (size_t)1 << 24);
    int rv = edge__uvarint_put(&cols, (uint64_t)m->ncols);
    if (rv == EDGE_OK) rv = edge__stamps_encode(&cols, m->cols, m->ncols);
    if (rv != EDGE_OK) {
        edge_buf_free(&cols);
        return rv;
    }
    static const char q[] = "INSERT INTO _edge_rows(tbl, pk, origin, seq, hlc, deleted, cols, image)"
                            " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT(tbl, pk) DO UPDATE SET"
                            " origin = excluded.origin, seq = excluded.seq, hlc = excluded.hlc,"
                            " deleted = excluded.deleted, cols = excluded.cols, image = excluded.image";
    sqlite3_stmt *st = edge__repl_stmt(db, q, sizeof(q) - 1);
    int rc = st ? SQLITE_OK : SQLITE_ERROR;
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
        sqlite3_bind_blob64(st, 2, pk, pklen, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, m->exist.origin, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)m->exist.seq);
        sqlite3_bind_int64(st, 5, (sqlite3_int64)m->exist.hlc);
        sqlite3_bind_int(st, 6, m->deleted ? 1 : 0);
        sqlite3_bind_blob64(st, 7, cols.data ? cols.data : "", cols.len, SQLITE_STATIC);
        if (m->deleted && m->image != NULL) {
            sqlite3_bind_blob64(st, 8, m->image, m->image_len, SQLITE_STATIC);
        }
        rc = sqlite3_step(st);
    }
    edge__repl_done(st);
    edge_buf_free(&cols);
    return rc == SQLITE_DONE ? EDGE_OK : EDGE_ESTORE;
}
