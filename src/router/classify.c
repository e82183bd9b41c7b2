/* SPDX-License-Identifier: MIT */
/* What a statement does, as SQLite says it: prepared once under the sandbox with an
 * observer on the connection's authorizer, which SQLite calls for every table read
 * (SQLITE_READ, also through views and for the tables a trigger reads), every table
 * written (INSERT/UPDATE/DELETE, triggers included), every function called
 * (SQLITE_FUNCTION) and every schema change. Nothing here reads the SQL text itself. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/err.h"
#include "router/router.h"

/* Built-in functions whose result can change between two calls with the same arguments
 * over the same data. The date and time functions are here whole: the authorizer names
 * the function but not its arguments, so datetime('now') cannot be told from
 * datetime('2024-01-01'); a read that calls either is simply never cached. */
static const char *const nondet[] = {
    "random",       "randomblob",   "changes",      "total_changes", "last_insert_rowid",
    "date",         "time",         "datetime",     "julianday",     "unixepoch",
    "strftime",     "timediff",     "current_date", "current_time",  "current_timestamp",
    "sqlite_offset", "load_extension",
};

bool edge_router_func_nondeterministic(const char *name)
{
    if (name == NULL) return false;
    for (size_t i = 0; i < sizeof(nondet) / sizeof(nondet[0]); i++) {
        if (strcasecmp(name, nondet[i]) == 0) return true;
    }
    return false;
}

static void add_table(char (*list)[EDGE_ROUTER_NAME_MAX], int *n, bool *overflow, const char *name)
{
    if (name == NULL || strncmp(name, "sqlite_", 7) == 0) return;
    for (int i = 0; i < *n; i++) {
        if (strcmp(list[i], name) == 0) return;
    }
    if (*n >= EDGE_ROUTER_MAX_TABLES || strlen(name) >= EDGE_ROUTER_NAME_MAX) {
        *overflow = true;
        return;
    }
    snprintf(list[(*n)++], EDGE_ROUTER_NAME_MAX, "%s", name);
}

static int observer(void *ud, int action, const char *a, const char *b, const char *dbname, const char *trigger)
{
    (void)trigger;
    struct edge_router_class *c = ud;
    bool main_db = dbname == NULL || strcmp(dbname, "main") == 0;
    switch (action) {
    case SQLITE_READ:
        if (main_db) add_table(c->read, &c->n_read, &c->overflow, a);
        break;
    case SQLITE_INSERT:
    case SQLITE_UPDATE:
    case SQLITE_DELETE:
        if (main_db) add_table(c->write, &c->n_write, &c->overflow, a);
        break;
    case SQLITE_FUNCTION:
        if (edge_router_func_nondeterministic(b)) {
            if (!c->nondeterministic) snprintf(c->first_nondet, sizeof(c->first_nondet), "%s", b);
            c->nondeterministic = true;
        }
        break;
    case SQLITE_CREATE_INDEX:
    case SQLITE_CREATE_TABLE:
    case SQLITE_CREATE_TRIGGER:
    case SQLITE_CREATE_VIEW:
    case SQLITE_DROP_INDEX:
    case SQLITE_DROP_TABLE:
    case SQLITE_DROP_TRIGGER:
    case SQLITE_DROP_VIEW:
    case SQLITE_ALTER_TABLE:
    case SQLITE_CREATE_VTABLE:
    case SQLITE_DROP_VTABLE:
        c->ddl = true;
        /* the table an index, trigger or ALTER is about (b for indexes and triggers) */
        add_table(c->write, &c->n_write, &c->overflow,
                  action == SQLITE_CREATE_INDEX || action == SQLITE_DROP_INDEX || action == SQLITE_CREATE_TRIGGER ||
                          action == SQLITE_DROP_TRIGGER
                      ? b
                      : action == SQLITE_ALTER_TABLE ? b : a);
        break;
    default: break;
    }
    return SQLITE_OK;
}

int edge_router_classify(struct edge_store_conn *conn, const char *sql, size_t len, struct edge_router_class *out)
{
    if (sql == NULL) return EDGE_EINVAL;
    out->n_stmts++;
    if (edge_store_txctl(sql, len) != EDGE_TXCTL_NONE) {
        out->txctl = true;
        return EDGE_OK;
    }
    bool was = edge_store_sandboxed(conn);
    edge_store_sandbox(conn, true);
    edge_store_observe(conn, observer, out);
    sqlite3_stmt *st = NULL;
    int rc = edge_store_prepare_once(conn, sql, len, &st, NULL);
    edge_store_observe(conn, NULL, NULL);
    edge_store_sandbox(conn, was);
    if (rc != SQLITE_OK) {
        out->unknown = true;
    } else if (st != NULL && !sqlite3_stmt_readonly(st)) {
        out->writes = true;
    }
    sqlite3_finalize(st);
    return EDGE_OK;
}
