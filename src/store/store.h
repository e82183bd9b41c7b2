/* SPDX-License-Identifier: MIT */
/* SQLite connections as edgelite uses them: WAL, synchronous=NORMAL, a busy timeout,
 * a per-connection prepared-statement cache and a per-statement time budget enforced
 * through the progress handler. A connection belongs to one thread at a time. */
#ifndef EDGE_STORE_H
#define EDGE_STORE_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "edgelite/errors.h"

enum edge_store_mode {
    EDGE_STORE_READ,  /* query_only; used inline on loop threads */
    EDGE_STORE_WRITE, /* the writer thread's connection and transaction connections */
};

struct edge_store_conn;

/* Process-wide SQLite set-up (memory statistics off, see PERF-NOTES.md) and a check
 * that the features edgelite needs are compiled in. Call once before any open;
 * EDGE_ESTORE with a message if SQLite lacks them. */
int edge_store_global_init(char *errmsg, size_t errmsg_len);

/* Open (creating if needed) the database at path. synchronous_full selects FULL instead
 * of NORMAL. busy_ms is the busy timeout. On success *out is owned by the caller
 * (edge_store_close). */
int edge_store_open(const char *path, enum edge_store_mode mode, bool synchronous_full, int busy_ms,
                    struct edge_store_conn **out, char *errmsg, size_t errmsg_len);
/* Roll back anything open, finalize cached statements, close. NULL is a no-op. */
void edge_store_close(struct edge_store_conn *c);
/* The underlying handle (borrowed). */
sqlite3 *edge_store_db(struct edge_store_conn *c);
/* sqlite3_step for client statements: a write in an open (deferred) transaction that
 * finds the write lock held waits for it within the busy timeout, as a write outside a
 * transaction does, instead of failing SQLITE_BUSY at once. A SQLite result code. */
int edge_store_step(struct edge_store_conn *c, sqlite3_stmt *st);
/* A number no other connection of this process had or will have (for caches keyed by
 * connection: a new connection may be allocated where a closed one was). */
uint64_t edge_store_conn_id(const struct edge_store_conn *c);

/* Prepare one statement of sql[0..len) through the cache. *out_tail is the offset of
 * what follows the statement. Returns a SQLite result code (SQLITE_OK); *out_stmt is
 * NULL for empty SQL (only whitespace/comments). Release with edge_store_release. */
int edge_store_prepare(struct edge_store_conn *c, const char *sql, size_t len, sqlite3_stmt **out_stmt,
                       size_t *out_tail);
/* Reset the statement and keep it in the cache for reuse (or finalize it). */
void edge_store_release(struct edge_store_conn *c, sqlite3_stmt *stmt);

/* Time budget for statements run from now on: 0 disables. Statements still running
 * after it fail with SQLITE_INTERRUPT (edge_store_budget_hit says so). */
void edge_store_set_budget(struct edge_store_conn *c, uint64_t budget_ms);
bool edge_store_budget_hit(struct edge_store_conn *c);

/* The sandbox for client SQL (docs/security.md). Every connection has an authorizer;
 * while the sandbox is on (set by the API around a client's statements, off for
 * edgelite's own) it refuses ATTACH/DETACH (VACUUM too), load_extension(), a PRAGMA with
 * a value other than the reporting ones (table_info(t), ...), reading or writing an
 * _edge_* table, a trigger naming one, and TEMP objects. A refused statement fails to
 * prepare with SQLITE_AUTH and edge_store_refusal says what was refused. Statements are
 * cached per mode: one prepared outside the sandbox is never served inside it. Release a
 * statement in the mode it was prepared in. */
void edge_store_sandbox(struct edge_store_conn *c, bool on);
bool edge_store_sandboxed(const struct edge_store_conn *c);
/* Why the sandbox refused the statement last prepared ("" if it did not). SQLite reports
 * some refusals (a function) as SQLITE_ERROR: a refusal here means SQLITE_AUTH. */
const char *edge_store_refusal(const struct edge_store_conn *c);
/* Prepare once, uncached, with the same checks (the text is known to the sandbox). */
int edge_store_prepare_once(struct edge_store_conn *c, const char *sql, size_t len, sqlite3_stmt **out_stmt,
                            size_t *out_tail);
/* A further authorizer, asked after the sandbox allowed an action (NULL to remove); the
 * connection's own authorizer must stay installed, so nobody else calls
 * sqlite3_set_authorizer on it. */
typedef int (*edge_store_observer)(void *ud, int action, const char *a, const char *b, const char *dbname,
                                   const char *trigger);
void edge_store_observe(struct edge_store_conn *c, edge_store_observer fn, void *ud);

/* The primary result code's name: "SQLITE_ERROR", "SQLITE_CONSTRAINT", ... */
const char *edge_store_code_name(int rc);
/* Translate a SQLite result code into an EDGE_E* code. */
int edge__err_from_sqlite(int rc);

/* The kind of transaction-control statement that sql starts with, by its first
 * keyword (after whitespace and comments). */
enum edge_txctl {
    EDGE_TXCTL_NONE = 0,
    EDGE_TXCTL_BEGIN,
    EDGE_TXCTL_BEGIN_READONLY, /* libSQL's BEGIN TRANSACTION READONLY */
    EDGE_TXCTL_END,            /* COMMIT / END */
    EDGE_TXCTL_ROLLBACK,
    EDGE_TXCTL_ROLLBACK_TO, /* ROLLBACK [TRANSACTION] TO [SAVEPOINT] name */
    EDGE_TXCTL_SAVEPOINT,
    EDGE_TXCTL_RELEASE,
};
enum edge_txctl edge_store_txctl(const char *sql, size_t len);
/* The savepoint name of a SAVEPOINT, RELEASE or ROLLBACK TO statement (unquoted,
 * case preserved) into out; "" if none. */
void edge_store_savepoint_name(const char *sql, size_t len, char *out, size_t outlen);

#endif
