/* SPDX-License-Identifier: MIT */
/* A table's shape as it is in this database: column names by position, the primary
 * key, whether it has foreign keys. Capture names the columns of every operation from
 * it, and apply matches an entry's columns to it by name (see apply.c). Loaded per
 * table for every log entry built, so it reads only pragma_table_info. */
#include "repl/repl_int.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"

void edge__tinfo_free(struct edge__tinfo *t)
{
    if (t->cols != NULL) {
        for (int i = 0; i < t->pk.ncols; i++) edge_free(t->cols[i]);
        edge_free(t->cols);
    }
    memset(t, 0, sizeof(*t));
}

int edge__tinfo_load(sqlite3 *db, const char *table, struct edge__tinfo *out)
{
    memset(out, 0, sizeof(*out));
    if (strlen(table) >= sizeof(out->name)) return EDGE_EINVAL;
    snprintf(out->name, sizeof(out->name), "%s", table);
    static const char q[] = "SELECT name, pk FROM pragma_table_info(?1) ORDER BY cid";
    sqlite3_stmt *st = edge__repl_stmt(db, q, sizeof(q) - 1);
    if (st == NULL) return EDGE_ESTORE;
    sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
    int rv = EDGE_OK, cap = 0, rc;
    while (rv == EDGE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        int col = out->pk.ncols;
        if (col >= 32767) {
            rv = EDGE_ETOOBIG;
            break;
        }
        if (col == cap) {
            int ncap = cap ? cap * 2 : 16;
            char **nc = edge_realloc(out->cols, (size_t)ncap * sizeof(*nc));
            if (nc == NULL) {
                rv = EDGE_ENOMEM;
                break;
            }
            out->cols = nc;
            cap = ncap;
        }
        out->cols[col] = edge_strdup((const char *)sqlite3_column_text(st, 0));
        if (out->cols[col] == NULL) {
            rv = EDGE_ENOMEM;
            break;
        }
        out->pk.ncols++;
        int pk = sqlite3_column_int(st, 1);
        if (pk > 0 && pk <= EDGE_REPL_MAX_PK) {
            out->pk.pk[pk - 1] = col;
            if (pk > out->pk.npk) out->pk.npk = pk;
        }
    }
    edge__repl_done(st);
    if (rv == EDGE_OK && out->pk.ncols == 0) rv = EDGE_ENOTFOUND;
    if (rv != EDGE_OK) edge__tinfo_free(out);
    return rv;
}

int edge__tinfo_col(const struct edge__tinfo *t, const char *name, size_t len)
{
    for (int i = 0; i < t->pk.ncols; i++) {
        if (strlen(t->cols[i]) == len && strncasecmp(t->cols[i], name, len) == 0) return i;
    }
    return -1;
}

int edge__repl_where_pk(sqlite3 *db, const struct edge__tinfo *t, struct edge_buf *sql, const void *pk,
                        size_t pklen, sqlite3_stmt **out)
{
    int rv = edge_buf_puts(sql, " WHERE ");
    for (int i = 0; i < t->pk.npk && rv == EDGE_OK; i++) {
        if (i > 0) rv = edge_buf_puts(sql, " AND ");
        if (rv == EDGE_OK) rv = edge_store_quote_ident(sql, t->cols[t->pk.pk[i]]);
        if (rv == EDGE_OK) rv = edge_buf_printf(sql, " IS ?%d", i + 1);
    }
    sqlite3_stmt *st = NULL;
    if (rv == EDGE_OK && (st = edge__repl_stmt(db, sql->data, sql->len)) == NULL) rv = EDGE_ESTORE;
    struct edge__rd r = {pk, pklen, 0};
    for (int i = 0; i < t->pk.npk && rv == EDGE_OK; i++) rv = edge__repl_bind_value(st, i + 1, &r);
    edge_buf_free(sql);
    if (rv != EDGE_OK) {
        edge__repl_done(st);
        return rv;
    }
    *out = st;
    return EDGE_OK;
}

/* "<verb> "table" WHERE pk1 IS ?1 AND ..." prepared with the primary key bound. */
int edge__repl_by_pk(sqlite3 *db, const char *verb, const struct edge__tinfo *t, const void *pk, size_t pklen,
                     sqlite3_stmt **out)
{
    struct edge_buf sql;
    edge_buf_init(&sql, 1 << 20);
    int rv = edge_buf_puts(&sql, verb);
    if (rv == EDGE_OK) rv = edge_store_quote_ident(&sql, t->name);
    if (rv != EDGE_OK) {
        edge_buf_free(&sql);
        return rv;
    }
    return edge__repl_where_pk(db, t, &sql, pk, pklen, out);
}

int edge__row_read(sqlite3 *db, const struct edge__tinfo *t, const void *pk, size_t pklen, struct edge__rowmeta *m)
{
    sqlite3_stmt *st = NULL;
    int rv = edge__repl_by_pk(db, "SELECT * FROM ", t, pk, pklen, &st);
    struct edge_buf vals;
    edge_buf_init(&vals, (size_t)1 << 30);
    if (rv == EDGE_OK) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW && sqlite3_column_count(st) == t->pk.ncols) {
            size_t *off = edge_calloc((size_t)t->pk.ncols + 1, sizeof(*off));
            const uint8_t **vp = edge_calloc((size_t)t->pk.ncols + 1, sizeof(*vp));
            rv = off && vp ? EDGE_OK : EDGE_ENOMEM;
            for (int c = 0; c < t->pk.ncols && rv == EDGE_OK; c++) {
                off[c] = vals.len;
                rv = edge__repl_put_value(&vals, sqlite3_column_value(st, c));
            }
            off[t->pk.ncols] = vals.len;
            if (rv == EDGE_OK) {
                size_t *lens = edge_calloc((size_t)t->pk.ncols + 1, sizeof(*lens));
                rv = lens ? EDGE_OK : EDGE_ENOMEM;
                for (int c = 0; c < t->pk.ncols && rv == EDGE_OK; c++) {
                    vp[c] = (const uint8_t *)vals.data + off[c];
                    lens[c] = off[c + 1] - off[c];
                }
                if (rv == EDGE_OK) rv = edge__meta_set_image(m, vp, lens);
                edge_free(lens);
            }
            edge_free(off);
            edge_free(vp);
        } else if (rc == SQLITE_ROW) {
            rv = EDGE_ESTORE; /* the table changed shape under us */
        } else {
            rv = rc == SQLITE_DONE ? EDGE_ENOTFOUND : EDGE_ESTORE;
        }
    }
    edge__repl_done(st);
    edge_buf_free(&vals);
    return rv;
}
