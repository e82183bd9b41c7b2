/* SPDX-License-Identifier: MIT */
/* CRDT rows and merge statistics. Statements come from the
 * connection's statement cache (store/sql.h): an increment is a handful of statements,
 * and parsing them anew per request was a visible part of its cost. */
#include "store/crdt_store.h"

#include <string.h>

#include "core/alloc.h"
#include "edgelite/errors.h"
#include "store/sql.h"

#define KEPT(db, q) edge_store_stmt_kept((db), (q), sizeof(q) - 1)

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS _edge_crdt("
    " name TEXT PRIMARY KEY, type TEXT NOT NULL, state BLOB NOT NULL,"
    " conflicts INTEGER NOT NULL DEFAULT 0, updated_ms INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS _edge_crdt_merges("
    " name TEXT NOT NULL, region TEXT NOT NULL, merges INTEGER NOT NULL, concurrent INTEGER NOT NULL,"
    " PRIMARY KEY(name, region)) WITHOUT ROWID;";

static const char q_load[] = "SELECT name, type, state, conflicts, updated_ms FROM _edge_crdt WHERE name = ?";
static const char q_note[] = "INSERT INTO _edge_crdt_merges(name, region, merges, concurrent) VALUES (?1, ?2, 1, ?3)"
                             " ON CONFLICT(name, region) DO UPDATE SET merges = merges + 1,"
                             " concurrent = concurrent + excluded.concurrent";

int edge_crdt_store_init(sqlite3 *db)
{
    return sqlite3_exec(db, schema, NULL, NULL, NULL) == SQLITE_OK ? EDGE_OK : EDGE_ESTORE;
}

int edge_crdt_store_ensure(sqlite3 *db)
{
    /* The newest table's statement prepares only once every table exists: then the
     * CREATE ... IF NOT EXISTS need not run again on this connection. */
    sqlite3_stmt *st = KEPT(db, q_note);
    if (st != NULL) {
        edge_store_stmt_done(st);
        return EDGE_OK;
    }
    return edge_crdt_store_init(db);
}

void edge_crdt_store_row_free(struct edge_crdt_row *row)
{
    edge_free(row->name);
    edge_free(row->type);
    edge_free(row->state);
    memset(row, 0, sizeof(*row));
}

/* Copy the current result row (name, type, state, conflicts, updated_ms) into out. */
static int row_from_stmt(sqlite3_stmt *st, struct edge_crdt_row *out)
{
    const char *name = (const char *)sqlite3_column_text(st, 0);
    const char *type = (const char *)sqlite3_column_text(st, 1);
    const void *state = sqlite3_column_blob(st, 2);
    int len = sqlite3_column_bytes(st, 2);
    memset(out, 0, sizeof(*out));
    out->name = edge_strdup(name ? name : "");
    out->type = edge_strdup(type ? type : "");
    out->state = edge_malloc(len > 0 ? (size_t)len : 1);
    if (out->name == NULL || out->type == NULL || out->state == NULL) {
        edge_crdt_store_row_free(out);
        return EDGE_ENOMEM;
    }
    if (len > 0) {
        memcpy(out->state, state, (size_t)len);
    }
    out->state_len = (size_t)len;
    out->conflicts = (uint64_t)sqlite3_column_int64(st, 3);
    out->updated_ms = sqlite3_column_int64(st, 4);
    return EDGE_OK;
}

int edge_crdt_store_load(sqlite3 *db, const char *name, struct edge_crdt_row *out)
{
    sqlite3_stmt *st = KEPT(db, q_load);
    int rv = EDGE_ESTORE;
    if (st == NULL || sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC) != SQLITE_OK) {
        goto out;
    }
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        rv = EDGE_ENOTFOUND;
    } else if (rc == SQLITE_ROW) {
        rv = row_from_stmt(st, out);
    }
out:
    edge_store_stmt_done(st);
    return rv;
}

int edge_crdt_store_save(sqlite3 *db, const struct edge_crdt_row *row)
{
    static const char q_save[] =
        "INSERT INTO _edge_crdt(name, type, state, conflicts, updated_ms) VALUES (?,?,?,?,?)"
        " ON CONFLICT(name) DO UPDATE SET type = excluded.type, state = excluded.state,"
        " conflicts = excluded.conflicts, updated_ms = excluded.updated_ms";
    sqlite3_stmt *st = NULL;
    int rv = EDGE_ESTORE;
    if (row->state_len > INT32_MAX) {
        return EDGE_ETOOBIG;
    }
    if ((st = KEPT(db, q_save)) == NULL ||
        sqlite3_bind_text(st, 1, row->name, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(st, 2, row->type, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_blob(st, 3, row->state_len ? (const void *)row->state : "", (int)row->state_len,
                          SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int64(st, 4, (sqlite3_int64)row->conflicts) != SQLITE_OK ||
        sqlite3_bind_int64(st, 5, row->updated_ms) != SQLITE_OK || sqlite3_step(st) != SQLITE_DONE) {
        goto out;
    }
    rv = EDGE_OK;
out:
    edge_store_stmt_done(st);
    return rv;
}

int edge_crdt_store_note_merge(sqlite3 *db, const char *name, const char *region, int concurrent)
{
    sqlite3_stmt *st = KEPT(db, q_note);
    int rv = EDGE_ESTORE;
    if (st != NULL && sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_bind_text(st, 2, region, -1, SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_bind_int(st, 3, concurrent ? 1 : 0) == SQLITE_OK && sqlite3_step(st) == SQLITE_DONE) {
        rv = EDGE_OK;
    }
    edge_store_stmt_done(st);
    return rv;
}

int edge_crdt_store_merges(sqlite3 *db, const char *name, edge_crdt_store_merge_cb cb, void *ud)
{
    static const char q_one[] = "SELECT name, region, merges, concurrent FROM _edge_crdt_merges WHERE name = ?1"
                                " ORDER BY region";
    static const char q_all[] = "SELECT name, region, merges, concurrent FROM _edge_crdt_merges ORDER BY name, region";
    sqlite3_stmt *st = name ? KEPT(db, q_one) : KEPT(db, q_all);
    int rv = EDGE_ESTORE;
    if (st == NULL || (name && sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC) != SQLITE_OK)) {
        goto out;
    }
    for (;;) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) {
            rv = EDGE_OK;
            break;
        }
        if (rc != SQLITE_ROW) {
            rv = EDGE_ESTORE;
            break;
        }
        const char *n = (const char *)sqlite3_column_text(st, 0);
        const char *r = (const char *)sqlite3_column_text(st, 1);
        struct edge_crdt_merge_stat ms = {n ? n : "", r ? r : "", (uint64_t)sqlite3_column_int64(st, 2),
                                          (uint64_t)sqlite3_column_int64(st, 3)};
        if ((rv = cb(ud, &ms)) != 0) {
            break;
        }
    }
out:
    edge_store_stmt_done(st);
    return rv;
}

int edge_crdt_store_list(sqlite3 *db, edge_crdt_store_row_cb cb, void *ud)
{
    sqlite3_stmt *st = NULL;
    int rv = EDGE_ESTORE;
    if (sqlite3_prepare_v2(db, "SELECT name, type, state, conflicts, updated_ms FROM _edge_crdt ORDER BY name",
                           -1, &st, NULL) != SQLITE_OK) {
        goto out;
    }
    for (;;) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) {
            rv = EDGE_OK;
            break;
        }
        if (rc != SQLITE_ROW) {
            rv = EDGE_ESTORE;
            break;
        }
        struct edge_crdt_row row;
        if ((rv = row_from_stmt(st, &row)) != EDGE_OK) {
            break;
        }
        rv = cb(ud, &row);
        edge_crdt_store_row_free(&row);
        if (rv != 0) {
            break;
        }
    }
out:
    sqlite3_finalize(st);
    return rv;
}
