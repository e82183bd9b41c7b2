/* SPDX-License-Identifier: MIT */
/* Between exec.c (running a statement) and exec_repl.c (the replication hooks around it):
 * the hooks' per-statement state, and the error and sandbox helpers both files use. */
#ifndef EDGE_API_HRANA_EXEC_REPL_H
#define EDGE_API_HRANA_EXEC_REPL_H

#include "api/hrana/hrana_int.h"

/* What repl_pre saw and did, for repl_post of the same statement. */
struct hrana__rx {
    size_t mark;   /* capture position before the statement */
    bool wrapped;  /* we opened a transaction around an autocommit write */
    bool sp;       /* the write runs inside SAVEPOINT edge_stmt */
    bool ddl;      /* a schema change */
    bool was_autocommit;
    bool guarded;  /* guard_begin was called: guard_end follows */
    char name[64]; /* savepoint name of SAVEPOINT / RELEASE / ROLLBACK TO */
};

/* Before stepping st (bound, about to run; tx is its transaction-control kind). Returns 0,
 * or -1 with e set. Every write runs inside its own SAVEPOINT so that a failing statement
 * leaves the database exactly as the change log records it. */
int hrana__repl_pre(struct hrana_ctx *ctx, sqlite3_stmt *st, enum edge_txctl tx, struct hrana__rx *x,
                    struct stmt_error *e);
/* After stepping st (ok says whether it succeeded); called exactly once after a
 * successful hrana__repl_pre. Returns 0, or -1 with e set when a successful statement had
 * to be undone (its change could not be replicated). */
int hrana__repl_post(struct hrana_ctx *ctx, sqlite3_stmt *st, enum edge_txctl tx, bool ok, struct hrana__rx *x,
                     struct stmt_error *e);

/* e = code and fmt with one %s argument a (defined in exec.c). */
void hrana__set_err(struct stmt_error *e, const char *code, const char *fmt, const char *a);
/* e = the error of rc on ctx's connection: QUERY_TIMEOUT for a spent budget, the
 * sandbox's refusal as SQLITE_AUTH, else SQLite's message (defined in exec.c). */
void hrana__set_sqlite_err(struct stmt_error *e, struct hrana_ctx *ctx, int rc);

/* Client statements run in the store's sandbox (hrana_execute_request); edgelite's own
 * statements around them (savepoints, the log entry, query_only) step out of it.
 * Inline: they run around every statement. */
static inline bool hrana__own_begin(struct hrana_ctx *ctx)
{
    bool was = edge_store_sandboxed(ctx->conn);
    edge_store_sandbox(ctx->conn, false);
    return was;
}

static inline void hrana__own_end(struct hrana_ctx *ctx, bool was)
{
    if (was) edge_store_sandbox(ctx->conn, true);
}

#endif
