/* SPDX-License-Identifier: MIT */
/* Small SQL helpers (see sql.h). */
#include "store/sql.h"

#include <string.h>

#include "core/err.h"

int edge_store_quote_ident(struct edge_buf *b, const char *s)
{
    int rv = edge_buf_putc(b, '"');
    for (const char *p = s; *p && rv == EDGE_OK; p++) {
        rv = *p == '"' ? edge_buf_puts(b, "\"\"") : edge_buf_putc(b, *p);
    }
    if (rv == EDGE_OK) rv = edge_buf_putc(b, '"');
    return rv;
}

sqlite3_stmt *edge_store_stmt_kept(sqlite3 *db, const char *sql, size_t len)
{
    for (sqlite3_stmt *st = sqlite3_next_stmt(db, NULL); st != NULL; st = sqlite3_next_stmt(db, st)) {
        const char *t = sqlite3_sql(st);
        /* strncmp stops at the first difference or NUL: most statements differ early. */
        if (t != NULL && t[0] == sql[0] && strncmp(t, sql, len) == 0 && t[len] == '\0' && !sqlite3_stmt_busy(st)) {
            sqlite3_reset(st);
            sqlite3_clear_bindings(st);
            return st;
        }
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v3(db, sql, (int)len, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
        sqlite3_finalize(st);
        return NULL;
    }
    return st;
}

void edge_store_stmt_done(sqlite3_stmt *st)
{
    if (st != NULL) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
}

int edge_store_exec_kept(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = edge_store_stmt_kept(db, sql, strlen(sql));
    if (st == NULL) return sqlite3_errcode(db) != SQLITE_OK ? sqlite3_errcode(db) : SQLITE_ERROR;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

int64_t edge_store_query_int(sqlite3 *db, const char *sql, int64_t dflt)
{
    sqlite3_stmt *st = NULL;
    int64_t v = dflt;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
        v = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return v;
}

int edge_store_table_columns(sqlite3 *db, const char *table, void (*cb)(void *ud, int cid, const char *name, int pk),
                           void *ud)
{
    static const char q[] = "SELECT name, pk FROM pragma_table_info(?1) ORDER BY cid";
    sqlite3_stmt *st = edge_store_stmt_kept(db, q, sizeof(q) - 1);
    if (st == NULL) return -1;
    sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
    int n = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        cb(ud, n, name ? name : "", sqlite3_column_int(st, 1));
        n++;
    }
    edge_store_stmt_done(st);
    return n;
}
