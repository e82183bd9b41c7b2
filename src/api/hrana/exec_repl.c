/* SPDX-License-Identifier: MIT */
/* The replication hooks around one Hrana statement (exec_repl.h): the savepoint that makes
 * a failing write leave no trace, the transaction around an autocommit write on a
 * transaction connection, the log entry written just before a COMMIT, schema changes and
 * CRDT-column checks, and the commit/settle callbacks of hrana_ctx. */
#include "api/hrana/exec_repl.h"

#include <stdio.h>
#include <string.h>

#include "store/sql.h"

static bool is_ddl(sqlite3_stmt *st)
{
    const char *s = sqlite3_sql(st);
    return s != NULL && hrana__starts_ddl(s, strlen(s));
}

/* Before stepping st. Returns 0, or -1 with e set.
 * Every write runs inside its own SAVEPOINT so that a failing statement leaves the
 * database exactly as the change log records it (SQLite's OR FAIL would otherwise keep
 * part of a statement that the log then drops). */
static int repl_pre_own(struct hrana_ctx *ctx, sqlite3_stmt *st, enum edge_txctl tx, struct hrana__rx *x,
                        struct stmt_error *e);

int hrana__repl_pre(struct hrana_ctx *ctx, sqlite3_stmt *st, enum edge_txctl tx, struct hrana__rx *x,
                    struct stmt_error *e)
{
    bool was = hrana__own_begin(ctx);
    int r = repl_pre_own(ctx, st, tx, x, e);
    hrana__own_end(ctx, was);
    if (r == 0 && ctx->guard_begin != NULL && ctx->own_txn &&
        (tx == EDGE_TXCTL_END || tx == EDGE_TXCTL_RELEASE || !sqlite3_stmt_readonly(st))) {
        ctx->guard_begin(ctx->hook_ud, ctx);
        x->guarded = true;
    }
    return r;
}

static int repl_pre_own(struct hrana_ctx *ctx, sqlite3_stmt *st, enum edge_txctl tx, struct hrana__rx *x,
                        struct stmt_error *e)
{
    memset(x, 0, sizeof(*x));
    if (ctx->capture == NULL) return 0;
    sqlite3 *db = edge_store_db(ctx->conn);
    x->was_autocommit = sqlite3_get_autocommit(db) != 0;
    if (tx == EDGE_TXCTL_SAVEPOINT || tx == EDGE_TXCTL_RELEASE || tx == EDGE_TXCTL_ROLLBACK_TO) {
        const char *sql = sqlite3_sql(st);
        edge_store_savepoint_name(sql, strlen(sql), x->name, sizeof(x->name));
    }
    if ((tx == EDGE_TXCTL_BEGIN || tx == EDGE_TXCTL_BEGIN_READONLY || tx == EDGE_TXCTL_SAVEPOINT) &&
        x->was_autocommit) {
        edge_capture_reset(ctx->capture);
    }
    bool commits = tx == EDGE_TXCTL_END ||
                   (tx == EDGE_TXCTL_RELEASE && edge_capture_release_ends_txn(ctx->capture, x->name));
    if (commits && !x->was_autocommit && ctx->own_txn) {
        /* The transaction's log entry is written inside it, just before it commits. */
        char msg[256] = "";
        if (ctx->commit_entry(ctx->hook_ud, ctx, msg, sizeof(msg)) != EDGE_OK) {
            hrana__set_err(e, "REPLICATION_ERROR", "%s", msg);
            return -1;
        }
    }
    x->mark = edge_capture_mark(ctx->capture);
    if (tx != EDGE_TXCTL_NONE || sqlite3_stmt_readonly(st)) return 0;
    if (ctx->own_txn && x->was_autocommit) {
        /* An autocommit write on a transaction connection: give it a transaction so its
         * log entry commits together with it. */
        if (edge_store_exec_kept(db, "BEGIN IMMEDIATE") != SQLITE_OK) {
            hrana__set_sqlite_err(e, ctx, sqlite3_errcode(db));
            return -1;
        }
        edge_capture_reset(ctx->capture);
        x->mark = 0;
        x->wrapped = true;
    }
    x->sp = edge_store_exec_kept(db, "SAVEPOINT edge_stmt") == SQLITE_OK;
    x->ddl = is_ddl(st);
    return 0;
}

static void count_pk(void *ud, int cid, const char *name, int pk)
{
    (void)cid;
    (void)name;
    if (pk > 0) ++*(int *)ud;
}

/* A user table without a PRIMARY KEY, or NULL. */
static const char *table_without_pk(sqlite3 *db)
{
    static const char q[] =
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
        " AND name NOT LIKE '\\_edge\\_%' ESCAPE '\\'";
    static __thread char name[128];
    sqlite3_stmt *st = NULL;
    const char *found = NULL;
    if (sqlite3_prepare_v2(db, q, -1, &st, NULL) == SQLITE_OK) {
        while (found == NULL && sqlite3_step(st) == SQLITE_ROW) {
            const char *t = (const char *)sqlite3_column_text(st, 0);
            int npk = 0;
            if (t != NULL && edge_store_table_columns(db, t, count_pk, &npk) > 0 && npk == 0) {
                snprintf(name, sizeof(name), "%s", t);
                found = name;
            }
        }
    }
    sqlite3_finalize(st);
    return found;
}

/* After stepping st (ok says whether it succeeded). Returns 0, or -1 with e set when a
 * successful statement had to be undone (its change could not be replicated). */
static int repl_post_own(struct hrana_ctx *ctx, sqlite3_stmt *st, enum edge_txctl tx, bool ok, struct hrana__rx *x,
                         struct stmt_error *e);

int hrana__repl_post(struct hrana_ctx *ctx, sqlite3_stmt *st, enum edge_txctl tx, bool ok, struct hrana__rx *x,
                     struct stmt_error *e)
{
    bool was = hrana__own_begin(ctx);
    int r = repl_post_own(ctx, st, tx, ok, x, e);
    if (ctx->own_txn && ctx->txn_stmt != NULL) {
        ctx->txn_stmt(ctx->hook_ud, ctx, tx == EDGE_TXCTL_END || tx == EDGE_TXCTL_RELEASE);
    }
    hrana__own_end(ctx, was);
    if (x->guarded) {
        ctx->guard_end(ctx->hook_ud, ctx);
        x->guarded = false;
    }
    return r;
}

static int repl_post_own(struct hrana_ctx *ctx, sqlite3_stmt *st, enum edge_txctl tx, bool ok, struct hrana__rx *x,
                         struct stmt_error *e)
{
    if (ctx->capture == NULL) return 0;
    sqlite3 *db = edge_store_db(ctx->conn);
    int ret = 0;
    if (ok && x->ddl) {
        const char *nopk = table_without_pk(db);
        if (nopk != NULL) {
            hrana__set_err(e, "REPLICATION_NO_PRIMARY_KEY",
                    "table %s has no PRIMARY KEY: edgelite replicates only tables with a primary key", nopk);
            ok = false;
            ret = -1;
        } else {
            char *sql = sqlite3_expanded_sql(st);
            if (sql == NULL || edge_capture_ddl(ctx->capture, sql, strlen(sql)) != EDGE_OK) {
                hrana__set_err(e, "REPLICATION_ERROR", "%scannot record the schema change", "");
                ok = false;
                ret = -1;
            }
            sqlite3_free(sql);
        }
    }
    if (ok) {
        /* CRDT columns (replication.crdt_columns): checked per statement, so a bad one
         * fails alone instead of failing the group commit it would join. */
        char msg[256] = "";
        if (edge_capture_check(ctx->capture, x->mark, x->ddl, msg, sizeof(msg)) != EDGE_OK) {
            hrana__set_err(e, "CRDT_COLUMN", "%s", msg[0] ? msg : "cannot check the CRDT columns");
            ok = false;
            ret = -1;
        }
    }
    if (x->sp) {
        if (!ok && !sqlite3_get_autocommit(db)) {
            edge_store_exec_kept(db, "ROLLBACK TO edge_stmt");
        }
        if (!sqlite3_get_autocommit(db)) edge_store_exec_kept(db, "RELEASE edge_stmt");
    }
    if (!ok) {
        edge_capture_rewind(ctx->capture, x->mark);
    }
    if (x->wrapped) {
        char msg[256] = "";
        if (ok && ctx->commit_entry(ctx->hook_ud, ctx, msg, sizeof(msg)) != EDGE_OK) {
            hrana__set_err(e, "REPLICATION_ERROR", "%s", msg);
            ok = false;
            ret = -1;
        }
        if (ok && edge_store_exec_kept(db, "COMMIT") == SQLITE_OK) {
            ctx->committed(ctx->hook_ud, ctx);
        } else {
            if (ok) {
                hrana__set_sqlite_err(e, ctx, sqlite3_errcode(db));
                ret = -1;
            }
            if (!sqlite3_get_autocommit(db)) edge_store_exec_kept(db, "ROLLBACK");
            edge_capture_reset(ctx->capture);
        }
        if (ctx->settled != NULL) ctx->settled(ctx->hook_ud, ctx);
        return ret;
    }
    if (ok) {
        if (tx == EDGE_TXCTL_SAVEPOINT) edge_capture_savepoint(ctx->capture, x->name, x->was_autocommit);
        if (tx == EDGE_TXCTL_ROLLBACK_TO) edge_capture_rollback_to(ctx->capture, x->name);
        if (tx == EDGE_TXCTL_RELEASE) edge_capture_release(ctx->capture, x->name);
    }
    if (ok && ctx->own_txn && !x->was_autocommit && sqlite3_get_autocommit(db)) {
        if (tx == EDGE_TXCTL_END || tx == EDGE_TXCTL_RELEASE) {
            ctx->committed(ctx->hook_ud, ctx);
        }
        edge_capture_reset(ctx->capture);
    } else if (sqlite3_get_autocommit(db)) {
        /* A failed COMMIT, a ROLLBACK or an implicit rollback: nothing of it survives. */
        edge_capture_reset(ctx->capture);
    }
    if (ctx->own_txn && ctx->settled != NULL && sqlite3_get_autocommit(db)) ctx->settled(ctx->hook_ud, ctx);
    return ret;
}
