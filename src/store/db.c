/* SPDX-License-Identifier: MIT */
/* edge_db: the public in-process API (include/edgelite/db.h) over one store
 * connection.
 *
 * DESIGN: this layer exists to cost next to nothing over a bare bind/step/reset
 * loop (target: >= 0.9x of it for a point read, bench/bench_inproc.c). Three things
 * keep it cheap:
 *  - A few "hot" statements stay checked out of the store's statement cache, keyed by
 *    a private copy of the caller's SQL text. A repeated query then costs a length
 *    check and one memcmp, instead of hashing and scanning the 64-slot store cache
 *    once to take the statement and once more to give it back. Statements leaving
 *    the hot set go back to the store cache, so it still bounds what is prepared.
 *  - The argument count must equal the parameter count, so every parameter is
 *    rebound on each call and sqlite3_clear_bindings is never needed. Text and blobs
 *    are bound SQLITE_STATIC: the caller's memory outlives the step, and the stale
 *    pointers left behind after reset are always overwritten before the next step.
 *  - Row values are written into one array owned by the handle, grown on demand. */
#include "edgelite/db.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "store/store.h"

#define HOT_SLOTS 4
#define DB_BUSY_MS 5000
#define VALS_INITIAL 16

struct hot_stmt {
    char *sql;          /* private copy of the key text; NULL when the slot is free */
    size_t len;         /* bytes of sql */
    sqlite3_stmt *stmt; /* checked out of the store cache while hot */
    uint64_t last_use;  /* db->tick at the last hit, for LRU eviction */
};

struct edge_db {
    struct edge_store_conn *conn;
    sqlite3 *sqlite;        /* borrowed from conn */
    unsigned flags;         /* EDGE_DB_* given to edge_db_open */
    struct hot_stmt hot[HOT_SLOTS];
    uint64_t tick;          /* query counter for hot-slot LRU */
    int mru;                /* hot slot hit last; checked first */
    struct edge_value *vals; /* row buffer handed to callbacks */
    int vals_cap;           /* entries in vals */
    sqlite3_stmt *cur;      /* statement whose rows are being delivered, else NULL */
    bool in_query;          /* a query is running: refuse re-entry from callbacks */
    uint64_t budget_ms;     /* per-statement time budget, 0 = none */
    char errmsg[EDGE_ERRMSG_SIZE];
};

int edge_db_global_init(void)
{
    char msg[EDGE_ERRMSG_SIZE];
    return edge_store_global_init(msg, sizeof(msg));
}

/* Record an error message and return code. */
__attribute__((format(printf, 3, 4))) static int fail(struct edge_db *db, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(db->errmsg, sizeof(db->errmsg), fmt, ap);
    va_end(ap);
    return code;
}

static int fail_sqlite(struct edge_db *db, int rc)
{
    int code = edge__err_from_sqlite(rc);
    /* query_only reports writes as SQLITE_READONLY; for the embedder that is a
     * permission question, not a storage fault. */
    if ((rc & 0xff) == SQLITE_READONLY) {
        code = EDGE_EPERM;
    }
    if (code == EDGE_OK) {
        code = EDGE_ESTORE; /* an unexpected SQLITE_ROW/DONE where an error was due */
    }
    return fail(db, code, "%s: %s", edge_store_code_name(rc), sqlite3_errmsg(db->sqlite));
}

static bool is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v';
}

/* Whether s[0..n) holds nothing but whitespace, semicolons and comments. */
static bool only_filler(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (is_space(s[i]) || s[i] == ';') {
            i++;
        } else if (s[i] == '-' && i + 1 < n && s[i + 1] == '-') {
            while (i < n && s[i] != '\n') {
                i++;
            }
        } else if (s[i] == '/' && i + 1 < n && s[i + 1] == '*') {
            i += 2;
            while (i + 1 < n && !(s[i] == '*' && s[i + 1] == '/')) {
                i++;
            }
            i += 2; /* an unterminated comment runs to the end, as in SQLite */
        } else {
            return false;
        }
    }
    return true;
}

int edge_db_open(const char *path, unsigned flags, struct edge_db **out_db, char *errmsg, size_t errmsg_len)
{
    char msg[EDGE_ERRMSG_SIZE] = "";
    struct edge_db *db = NULL;
    int rv = EDGE_EINVAL;

    if (path == NULL || out_db == NULL) {
        snprintf(msg, sizeof(msg), "edge_db_open: NULL path or out_db");
        goto out;
    }
    if ((flags & ~(EDGE_DB_READONLY | EDGE_DB_SYNC_FULL)) != 0) {
        snprintf(msg, sizeof(msg), "edge_db_open: unknown flags 0x%x", flags);
        goto out;
    }
    /* The store always opens with SQLITE_OPEN_CREATE (its writer creates the file);
     * a read-only handle must not leave an empty database behind a typo. */
    if ((flags & EDGE_DB_READONLY) && path[0] != '\0' && strcmp(path, ":memory:") != 0 && access(path, F_OK) != 0) {
        snprintf(msg, sizeof(msg), "open %s: no such file (read-only handles do not create it)", path);
        rv = EDGE_ENOTFOUND;
        goto out;
    }
    rv = EDGE_ENOMEM;
    db = edge_calloc(1, sizeof(*db));
    if (db == NULL) {
        goto out;
    }
    db->vals = edge_calloc(VALS_INITIAL, sizeof(*db->vals));
    if (db->vals == NULL) {
        goto out;
    }
    db->vals_cap = VALS_INITIAL;
    db->flags = flags;
    rv = edge_store_open(path, (flags & EDGE_DB_READONLY) ? EDGE_STORE_READ : EDGE_STORE_WRITE,
                         (flags & EDGE_DB_SYNC_FULL) != 0, DB_BUSY_MS, &db->conn, msg, sizeof(msg));
    if (rv != EDGE_OK) {
        goto out;
    }
    db->sqlite = edge_store_db(db->conn);
    *out_db = db;
    db = NULL;
    rv = EDGE_OK;
out:
    if (rv != EDGE_OK && errmsg != NULL && errmsg_len > 0) {
        snprintf(errmsg, errmsg_len, "%s", msg[0] ? msg : edge_strerror(rv));
    }
    edge_db_close(db);
    return rv;
}

void edge_db_close(struct edge_db *db)
{
    if (db == NULL) {
        return;
    }
    for (int i = 0; i < HOT_SLOTS; i++) {
        /* Hot statements are on loan from the store's cache: give them back. */
        if (db->hot[i].stmt != NULL) edge_store_release(db->conn, db->hot[i].stmt);
        edge_free(db->hot[i].sql);
    }
    edge_store_close(db->conn);
    edge_free(db->vals);
    edge_free(db);
}

/* Find or prepare the statement for sql[0..len). *out_slot is its hot slot, or -1 if
 * it could not be made hot (then it goes back through edge_store_release). */
static int get_stmt(struct edge_db *db, const char *sql, size_t len, sqlite3_stmt **out_stmt, int *out_slot)
{
    sqlite3_stmt *stmt = NULL;
    size_t tail = 0;
    int victim = 0;

    db->tick++;
    /* The statement used last is the likeliest: a loop of one query, or one query
     * between BEGIN and COMMIT. */
    struct hot_stmt *m = &db->hot[db->mru];
    if (m->len == len && m->sql != NULL && memcmp(m->sql, sql, len) == 0) {
        m->last_use = db->tick;
        *out_stmt = m->stmt;
        *out_slot = db->mru;
        return EDGE_OK;
    }
    for (int i = 0; i < HOT_SLOTS; i++) {
        struct hot_stmt *h = &db->hot[i];
        if (h->len == len && h->sql != NULL && memcmp(h->sql, sql, len) == 0) {
            h->last_use = db->tick;
            db->mru = i;
            *out_stmt = h->stmt;
            *out_slot = i;
            return EDGE_OK;
        }
    }
    int rc = edge_store_prepare(db->conn, sql, len, &stmt, &tail);
    if (rc != SQLITE_OK) {
        return fail_sqlite(db, rc);
    }
    if (stmt == NULL) {
        return fail(db, EDGE_EINVAL, "no SQL statement in the text");
    }
    if (!only_filler(sql + tail, len - tail)) {
        edge_store_release(db->conn, stmt);
        return fail(db, EDGE_EINVAL, "more than one statement (edge_db_exec runs scripts)");
    }
    for (int i = 0; i < HOT_SLOTS; i++) {
        if (db->hot[i].sql == NULL) {
            victim = i;
            break;
        }
        if (db->hot[i].last_use < db->hot[victim].last_use) {
            victim = i;
        }
    }
    *out_stmt = stmt;
    *out_slot = -1;
    char *copy = edge_strndup(sql, len);
    if (copy == NULL) {
        return EDGE_OK; /* still runnable, just not kept hot */
    }
    struct hot_stmt *h = &db->hot[victim];
    if (h->sql != NULL) {
        edge_store_release(db->conn, h->stmt);
        edge_free(h->sql);
    }
    h->sql = copy;
    h->len = len;
    h->stmt = stmt;
    h->last_use = db->tick;
    db->mru = victim;
    *out_slot = victim;
    return EDGE_OK;
}

static int bind_args(struct edge_db *db, sqlite3_stmt *stmt, const struct edge_value *args, size_t nargs)
{
    int rc = SQLITE_OK;
    for (size_t k = 0; k < nargs; k++) {
        const struct edge_value *a = &args[k];
        int idx = (int)k + 1;
        switch (a->type) {
        case EDGE_DB_NULL: rc = sqlite3_bind_null(stmt, idx); break;
        case EDGE_DB_INTEGER: rc = sqlite3_bind_int64(stmt, idx, a->i); break;
        case EDGE_DB_FLOAT: rc = sqlite3_bind_double(stmt, idx, a->f); break;
        case EDGE_DB_TEXT:
        case EDGE_DB_BLOB:
            if (a->p == NULL && a->len != 0) {
                return fail(db, EDGE_EINVAL, "argument %zu: NULL pointer with length %zu", k + 1, a->len);
            }
            /* A NULL pointer would bind SQL NULL; "" keeps an empty value empty. */
            if (a->type == EDGE_DB_TEXT) {
                rc = sqlite3_bind_text64(stmt, idx, a->p ? a->p : "", a->len, SQLITE_STATIC, SQLITE_UTF8);
            } else {
                rc = sqlite3_bind_blob64(stmt, idx, a->p ? a->p : "", a->len, SQLITE_STATIC);
            }
            break;
        default: return fail(db, EDGE_EINVAL, "argument %zu: unknown type %d", k + 1, a->type);
        }
        if (rc != SQLITE_OK) {
            return fail_sqlite(db, rc);
        }
    }
    return EDGE_OK;
}

/* Fill db->vals from the current row. Through sqlite3_column_value: one column lookup
 * per value instead of one per sqlite3_column_* call (type, pointer, length). */
static int read_row(struct edge_db *db, sqlite3_stmt *stmt, int ncols)
{
    if (ncols > db->vals_cap) {
        struct edge_value *v = edge_realloc(db->vals, (size_t)ncols * sizeof(*v));
        if (v == NULL) {
            return fail(db, EDGE_ENOMEM, "row of %d columns: out of memory", ncols);
        }
        db->vals = v;
        db->vals_cap = ncols;
    }
    for (int c = 0; c < ncols; c++) {
        struct edge_value *v = &db->vals[c];
        sqlite3_value *sv = sqlite3_column_value(stmt, c);
        const void *p;
        switch (sqlite3_value_type(sv)) {
        case SQLITE_INTEGER: *v = (struct edge_value){.type = EDGE_DB_INTEGER, .i = sqlite3_value_int64(sv)}; break;
        case SQLITE_FLOAT: *v = (struct edge_value){.type = EDGE_DB_FLOAT, .f = sqlite3_value_double(sv)}; break;
        case SQLITE_TEXT:
            /* Pointer first, then length: the documented order that avoids a conversion. */
            p = sqlite3_value_text(sv);
            if (p == NULL) {
                return fail(db, EDGE_ENOMEM, "column %d: out of memory", c);
            }
            *v = (struct edge_value){.type = EDGE_DB_TEXT, .p = p, .len = (size_t)sqlite3_value_bytes(sv)};
            break;
        case SQLITE_BLOB:
            p = sqlite3_value_blob(sv);
            *v = (struct edge_value){.type = EDGE_DB_BLOB, .p = p ? p : "", .len = (size_t)sqlite3_value_bytes(sv)};
            break;
        default: *v = (struct edge_value){.type = EDGE_DB_NULL}; break;
        }
    }
    return EDGE_OK;
}

int edge_db_query(struct edge_db *db, const char *sql, size_t sql_len, const struct edge_value *args,
                  size_t nargs, edge_db_row_cb cb, void *ud, int64_t *out_changes)
{
    sqlite3_stmt *stmt = NULL;
    int slot = -1;
    int64_t before = 0;
    int rv;

    if (db == NULL) {
        return EDGE_EINVAL;
    }
    db->errmsg[0] = '\0';
    if (db->in_query) {
        return fail(db, EDGE_EBUSY, "edge_db_query called from a row callback of the same handle");
    }
    if ((sql == NULL && sql_len != 0) || (args == NULL && nargs != 0)) {
        return fail(db, EDGE_EINVAL, "NULL sql or args with a non-zero length");
    }
    /* Trailing whitespace must not make "SELECT 1\n" a different cache key. */
    while (sql_len > 0 && is_space(sql[sql_len - 1])) {
        sql_len--;
    }
    rv = get_stmt(db, sql, sql_len, &stmt, &slot);
    if (rv != EDGE_OK) {
        return rv;
    }
    int nparams = sqlite3_bind_parameter_count(stmt);
    if ((size_t)nparams != nargs) {
        rv = fail(db, EDGE_EINVAL, "statement has %d parameters, %zu arguments given", nparams, nargs);
        goto out;
    }
    rv = bind_args(db, stmt, args, nargs);
    if (rv != EDGE_OK) {
        goto out;
    }
    if (db->budget_ms != 0) {
        edge_store_set_budget(db->conn, db->budget_ms);
    }
    if (out_changes != NULL) {
        before = sqlite3_total_changes64(db->sqlite);
    }
    db->in_query = true;
    db->cur = stmt;
    int ncols = -1;
    for (;;) {
        int rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW) {
            if (cb == NULL) {
                continue;
            }
            if (ncols < 0) {
                /* Only now: a schema change re-prepares the statement inside the
                 * first step, and the column count may change with it. */
                ncols = sqlite3_column_count(stmt);
            }
            rv = read_row(db, stmt, ncols);
            if (rv != EDGE_OK) {
                break;
            }
            rv = cb(ud, ncols, db->vals);
            if (rv != EDGE_OK) {
                if (rv == EDGE_DB_STOP) {
                    rv = EDGE_OK; /* the reset below ends the statement */
                } else {
                    fail(db, rv, "stopped by the row callback (%s)", edge_err_name(rv));
                }
                break;
            }
        } else if (rc == SQLITE_DONE) {
            rv = EDGE_OK;
            break;
        } else {
            rv = fail_sqlite(db, rc);
            break;
        }
    }
    db->cur = NULL;
    db->in_query = false;
    /* total_changes moves only for INSERT/UPDATE/DELETE (and their triggers), so a
     * DDL or SELECT after a write does not report the earlier write's count. */
    if (out_changes != NULL) {
        *out_changes = (rv == EDGE_OK && sqlite3_total_changes64(db->sqlite) != before) ? sqlite3_changes64(db->sqlite)
                                                                                        : 0;
    }
out:
    if (slot >= 0) {
        /* Also ends an autocommit read transaction a callback cut short. */
        sqlite3_reset(stmt);
    } else {
        edge_store_release(db->conn, stmt);
    }
    return rv;
}

int edge_db_exec(struct edge_db *db, const char *sql)
{
    char *err = NULL;
    int rv = EDGE_OK;

    if (db == NULL) {
        return EDGE_EINVAL;
    }
    db->errmsg[0] = '\0';
    if (db->in_query) {
        return fail(db, EDGE_EBUSY, "edge_db_exec called from a row callback of the same handle");
    }
    if (sql == NULL) {
        return fail(db, EDGE_EINVAL, "NULL sql");
    }
    if (db->budget_ms != 0) {
        edge_store_set_budget(db->conn, db->budget_ms);
    }
    int rc = sqlite3_exec(db->sqlite, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK) {
        rv = fail_sqlite(db, rc);
        if (err != NULL) {
            /* sqlite3_exec's message names the failing statement's error precisely. */
            fail(db, rv, "%s: %s", edge_store_code_name(rc), err);
        }
    }
    sqlite3_free(err);
    return rv;
}

const char *edge_db_column_name(struct edge_db *db, int col)
{
    if (db == NULL || db->cur == NULL || col < 0 || col >= sqlite3_column_count(db->cur)) {
        return NULL;
    }
    return sqlite3_column_name(db->cur, col);
}

int64_t edge_db_last_rowid(struct edge_db *db) { return db ? sqlite3_last_insert_rowid(db->sqlite) : 0; }

void edge_db_set_budget(struct edge_db *db, uint64_t budget_ms)
{
    if (db == NULL) {
        return;
    }
    db->budget_ms = budget_ms;
    if (budget_ms == 0) {
        edge_store_set_budget(db->conn, 0); /* drop a deadline left by the last query */
    }
}

const char *edge_db_errmsg(struct edge_db *db) { return db ? db->errmsg : "NULL handle"; }
