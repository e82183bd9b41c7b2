/* SPDX-License-Identifier: MIT */
/* The in-process C API: run SQL against an edgelite SQLite file from the embedding
 * program's own thread, without a server hop. A handle wraps one SQLite connection
 * with edgelite's settings (WAL, synchronous=NORMAL, busy timeout) and its
 * prepared-statement cache, so repeating the same SQL text costs one bind/step/reset.
 * Rows are delivered to a callback as borrowed values; nothing is allocated per row.
 * See docs/embedding.md. */
#ifndef EDGELITE_DB_H
#define EDGELITE_DB_H

#include <stddef.h>
#include <stdint.h>

#include "edgelite/errors.h"

/* Value types; the numbering follows SQLite's except that NULL is 0, so a
 * zero-initialised struct edge_value is a NULL. */
enum edge_db_type {
    EDGE_DB_NULL = 0,
    EDGE_DB_INTEGER = 1,
    EDGE_DB_FLOAT = 2,
    EDGE_DB_TEXT = 3,
    EDGE_DB_BLOB = 4,
};

/* One SQL value: an argument (read during the call only, not retained) or a column of
 * a result row (borrowed until the row callback returns). Only the field matching
 * type is meaningful. TEXT is UTF-8, len bytes without the terminator; in rows it is
 * also NUL-terminated. p is never NULL for TEXT/BLOB in rows (it points at "" when
 * len is 0); in arguments p may be NULL only when len is 0. */
struct edge_value {
    int type;      /* enum edge_db_type */
    int64_t i;     /* EDGE_DB_INTEGER */
    double f;      /* EDGE_DB_FLOAT */
    const void *p; /* EDGE_DB_TEXT / EDGE_DB_BLOB bytes */
    size_t len;    /* bytes at p */
};

/* Argument constructors, e.g. struct edge_value a[] = {EDGE_DB_I64(7), EDGE_DB_STR("x")}. */
#define EDGE_DB_NULLV() ((struct edge_value){.type = EDGE_DB_NULL})
#define EDGE_DB_I64(v) ((struct edge_value){.type = EDGE_DB_INTEGER, .i = (v)})
#define EDGE_DB_F64(v) ((struct edge_value){.type = EDGE_DB_FLOAT, .f = (v)})
#define EDGE_DB_TEXTN(s, n) ((struct edge_value){.type = EDGE_DB_TEXT, .p = (s), .len = (n)})
#define EDGE_DB_STR(s) EDGE_DB_TEXTN((s), strlen(s)) /* needs <string.h> */
#define EDGE_DB_BLOBN(b, n) ((struct edge_value){.type = EDGE_DB_BLOB, .p = (b), .len = (n)})

/* edge_db_open flags. */
#define EDGE_DB_READONLY 0x1u  /* refuse every write (PRAGMA query_only): EDGE_EPERM */
#define EDGE_DB_SYNC_FULL 0x2u /* synchronous=FULL instead of NORMAL (fsync per commit) */

struct edge_db; /* opaque; used by one thread at a time */

/* Called once per result row. vals[0..ncols) are borrowed until the callback returns.
 * Return EDGE_OK for the next row; EDGE_DB_STOP to end the statement early with
 * success (it saves SQLite's final step when the caller needs only the first row); any
 * other value stops the statement and is returned by edge_db_query unchanged. */
#define EDGE_DB_STOP (-1)
typedef int (*edge_db_row_cb)(void *ud, int ncols, const struct edge_value *vals);

/* Process-wide SQLite set-up: memory statistics off (they serialise every allocation
 * behind one mutex) and multi-thread mode. Call once, before any other thread uses
 * edgelite or SQLite; optional (edge_db_open works without it, only slower when
 * several threads read). EDGE_ESTORE if SQLite lacks features edgelite needs. */
EDGE_API int edge_db_global_init(void);

/* Open the database at path (copied, not retained), creating it unless
 * EDGE_DB_READONLY is given. On success *out_db is owned by the caller (edge_db_close).
 * errmsg (may be NULL) receives a message on failure. Returns EDGE_EINVAL (NULL
 * argument, unknown flags), EDGE_ENOTFOUND (read-only and the file does not exist),
 * EDGE_ENOMEM, EDGE_ESTORE (cannot open or configure the file). */
EDGE_API int edge_db_open(const char *path, unsigned flags, struct edge_db **out_db, char *errmsg,
                          size_t errmsg_len);

/* Roll back an open transaction, finalize statements, close. NULL is a no-op. Must
 * not be called from inside a row callback. */
EDGE_API void edge_db_close(struct edge_db *db);

/* Run the single statement sql[0..sql_len) with args[0..nargs) bound to its
 * parameters in index order (?, ?NNN, :name, @name, $name all count by index), calling
 * cb (may be NULL) for each row. Statements are cached by their exact text, so reuse
 * the same SQL with different args rather than formatting values into it. sql and
 * args are read during the call only. *out_changes (may be NULL) receives the number
 * of rows the statement inserted, updated or deleted.
 * Returns EDGE_OK; EDGE_EINVAL (no statement, more than one statement, nargs not equal
 * to the parameter count, bad argument type); EDGE_EPERM (write on a read-only
 * handle); EDGE_ECONFLICT (constraint violation); EDGE_EBUSY (database locked beyond
 * the busy timeout, or called from inside a row callback of the same handle);
 * EDGE_ETIMEDOUT (statement budget exceeded); EDGE_ESTORE (syntax error, missing table,
 * other SQLite errors); EDGE_ENOMEM; or the callback's value other than EDGE_OK and
 * EDGE_DB_STOP. On any error,
 * edge_db_errmsg says why. Statements started with BEGIN stay open across calls until
 * COMMIT/ROLLBACK, as in SQLite. */
EDGE_API int edge_db_query(struct edge_db *db, const char *sql, size_t sql_len, const struct edge_value *args,
                           size_t nargs, edge_db_row_cb cb, void *ud, int64_t *out_changes);

/* Run a script of zero or more statements without arguments or results (schema set-up,
 * PRAGMAs). sql is NUL-terminated, read during the call only. Error codes as
 * edge_db_query. */
EDGE_API int edge_db_exec(struct edge_db *db, const char *sql);

/* Name of result column col of the statement being run, or NULL if col is out of
 * range. Only valid inside a row callback; borrowed until the callback returns. */
EDGE_API const char *edge_db_column_name(struct edge_db *db, int col);

/* Rowid of the most recent successful INSERT on this handle (0 if none). */
EDGE_API int64_t edge_db_last_rowid(struct edge_db *db);

/* Limit each later statement to budget_ms of run time (0, the default, disables); a
 * statement running longer fails with EDGE_ETIMEDOUT. */
EDGE_API void edge_db_set_budget(struct edge_db *db, uint64_t budget_ms);

/* Message for the last failed call on db: never NULL, "" after a success. Borrowed
 * until the next call on db. */
EDGE_API const char *edge_db_errmsg(struct edge_db *db);

#endif
