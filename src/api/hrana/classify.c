/* SPDX-License-Identifier: MIT */
/* Hrana requests: where a unit must run (see hrana.h). */
#include "api/hrana/hrana_int.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/alloc.h"
#include "store/sql.h"

/* ---------------------------------------------------------------------------------- */
/* Classification                                                                     */
/* ---------------------------------------------------------------------------------- */

const char *hrana__stmt_sql(json_t *stmt, const struct hrana_sqlmap *sqls, size_t *len)
{
    json_t *sql = json_object_get(stmt, "sql");
    if (json_is_string(sql)) {
        *len = json_string_length(sql);
        return json_string_value(sql);
    }
    json_t *id = json_object_get(stmt, "sql_id");
    const char *s = sqls ? hrana_sqlmap_get(sqls, (int32_t)json_integer_value(id)) : NULL;
    *len = s ? strlen(s) : 0;
    return s;
}

/* 0 = read, 1 = write, 2 = transaction control. Unknown or unpreparable SQL counts as
 * a write: the writer runs anything correctly, the read path only reads. */
static int authorizer(void *ud, int action, const char *a, const char *b, const char *dbname, const char *trigger)
{
    (void)b;
    (void)trigger;
    struct hrana_tables *t = ud;
    if ((action == SQLITE_INSERT || action == SQLITE_UPDATE || action == SQLITE_DELETE) && a != NULL &&
        (dbname == NULL || strcmp(dbname, "main") == 0) && strncmp(a, "sqlite_", 7) != 0) {
        for (int i = 0; i < t->n; i++) {
            if (strcmp(t->names[i], a) == 0) return SQLITE_OK;
        }
        if (t->n < HRANA_MAX_TABLES && strlen(a) < sizeof(t->names[0])) {
            snprintf(t->names[t->n++], sizeof(t->names[0]), "%s", a);
        } else {
            t->overflow = true;
        }
    }
    return SQLITE_OK;
}

/* The tables of the last few write statements each loop thread classified. The answer
 * depends only on the text and the schema the names resolve in (clients cannot make TEMP
 * objects), so it is kept per connection under the main schema's version: preparing
 * every write a second time was a few per cent of a node's CPU under a write load.
 * Texts longer than a slot are not kept. */
#define TCACHE_SLOTS 16
#define TCACHE_SQL 480
struct tcache_slot {
    uint64_t conn; /* edge_store_conn_id */
    int64_t schema;
    size_t len; /* 0: empty */
    char sql[TCACHE_SQL];
    struct hrana_tables t;
};
static __thread struct tcache_slot tcache[TCACHE_SLOTS];

static uint32_t tcache_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static int64_t schema_version(sqlite3 *db)
{
    static const char q[] = "PRAGMA main.schema_version";
    sqlite3_stmt *st = edge_store_stmt_kept(db, q, sizeof(q) - 1);
    int64_t v = st != NULL && sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    edge_store_stmt_done(st);
    return v;
}

/* Add the names of a to t (no duplicates), as the authorizer would have. */
static void tables_merge(struct hrana_tables *t, const struct hrana_tables *a)
{
    for (int i = 0; i < a->n; i++) {
        bool have = false;
        for (int k = 0; k < t->n && !have; k++) have = strcmp(t->names[k], a->names[i]) == 0;
        if (have) continue;
        if (t->n < HRANA_MAX_TABLES) {
            memcpy(t->names[t->n++], a->names[i], sizeof(t->names[0]));
        } else {
            t->overflow = true;
        }
    }
    if (a->overflow) t->overflow = true;
}

/* Which tables a write statement touches: prepare it again (uncached) under an
 * authorizer, since a cached statement does not call the authorizer. */
static void collect_tables(struct edge_store_conn *rconn, const char *sql, size_t len, struct hrana_tables *t)
{
    sqlite3 *db = edge_store_db(rconn);
    uint64_t conn = edge_store_conn_id(rconn);
    struct tcache_slot *slot = NULL;
    int64_t ver = -1;
    if (len > 0 && len < TCACHE_SQL) {
        ver = schema_version(db); /* before preparing: a later change only makes a miss */
        slot = &tcache[tcache_hash(sql, len) % TCACHE_SLOTS];
        if (ver >= 0 && slot->len == len && slot->conn == conn && slot->schema == ver && memcmp(slot->sql, sql, len) == 0) {
            tables_merge(t, &slot->t);
            return;
        }
    }
    struct hrana_tables mine;
    memset(&mine, 0, sizeof(mine));
    edge_store_observe(rconn, authorizer, &mine);
    sqlite3_stmt *st = NULL;
    edge_store_prepare_once(rconn, sql, len, &st, NULL);
    sqlite3_finalize(st);
    edge_store_observe(rconn, NULL, NULL);
    tables_merge(t, &mine);
    if (slot != NULL && ver >= 0) {
        slot->conn = conn;
        slot->schema = ver;
        slot->len = len;
        memcpy(slot->sql, sql, len);
        slot->t = mine;
    }
}

bool hrana__starts_ddl(const char *sql, size_t len)
{
    static const char *const words[] = {"CREATE", "ALTER", "DROP"};
    size_t k = 0;
    while (k < len && (sql[k] == ' ' || sql[k] == '\n' || sql[k] == '\t' || sql[k] == '\r' || sql[k] == '(')) k++;
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(words[i]);
        if (len - k >= n && strncasecmp(sql + k, words[i], n) == 0 &&
            (len - k == n || !((sql[k + n] >= 'a' && sql[k + n] <= 'z') || (sql[k + n] >= 'A' && sql[k + n] <= 'Z')))) {
            return true;
        }
    }
    return false;
}

/* The length of the first statement of sql, through its ';' (or all of sql), found without
 * preparing it: at the first ';' outside quotes and comments where the text so far is a
 * complete statement for SQLite (sqlite3_complete, which knows that the ';'s inside
 * CREATE TRIGGER ... END do not end it). *scratch is a buffer the caller frees. */
static size_t stmt_extent(const char *sql, size_t len, char **scratch, size_t *scratch_cap)
{
    size_t i = 0;
    while (i < len) {
        char c = sql[i];
        if (c == '\'' || c == '"' || c == '`' || c == '[') {
            char close = c == '[' ? ']' : c;
            for (i++; i < len && sql[i] != close; i++) {
            }
            i++; /* a doubled quote is two quoted strings in a row: the same extent */
        } else if (c == '-' && i + 1 < len && sql[i + 1] == '-') {
            while (i < len && sql[i] != '\n') i++;
        } else if (c == '/' && i + 1 < len && sql[i + 1] == '*') {
            for (i += 2; i + 1 < len && !(sql[i] == '*' && sql[i + 1] == '/'); i++) {
            }
            i += 2;
        } else if (c == ';') {
            if (i + 2 > *scratch_cap) {
                char *p = edge_realloc(*scratch, i + 2);
                if (p == NULL) return len; /* classify the rest as one statement */
                *scratch = p;
                *scratch_cap = i + 2;
            }
            memcpy(*scratch, sql, i + 1);
            (*scratch)[i + 1] = '\0';
            if (sqlite3_complete(*scratch)) return i + 1;
            i++;
        } else {
            i++;
        }
    }
    return len;
}

static int classify_sql_in(const char *sql, size_t len, struct edge_store_conn *rconn, bool whole,
                           struct hrana_tables *tables);

/* Client SQL is prepared under the sandbox here too, so the statement cached for the
 * read path is the sandboxed one; a refused statement stays a read and fails there. */
static int classify_sql(const char *sql, size_t len, struct edge_store_conn *rconn, bool whole,
                        struct hrana_tables *tables)
{
    bool was = edge_store_sandboxed(rconn);
    edge_store_sandbox(rconn, true);
    int kind = classify_sql_in(sql, len, rconn, whole, tables);
    edge_store_sandbox(rconn, was);
    return kind;
}

static int classify_sql_in(const char *sql, size_t len, struct edge_store_conn *rconn, bool whole,
                           struct hrana_tables *tables)
{
    if (sql == NULL) {
        return 0; /* reported as an error when executed */
    }
    size_t off = 0;
    int kind = 0;
    int guard = 0;
    char *scratch = NULL;
    size_t scratch_cap = 0;
    while (off < len) {
        if (guard++ >= 10000) {
            kind = 2; /* too many statements to look at: the transaction route runs anything */
            break;
        }
        bool txctl = edge_store_txctl(sql + off, len - off) != EDGE_TXCTL_NONE;
        if (txctl) {
            if (tables == NULL) {
                kind = 2;
                break;
            }
            kind = 2; /* keep scanning: the tables written matter too */
        }
        sqlite3_stmt *st = NULL;
        size_t tail = 0;
        int rc = edge_store_prepare(rconn, sql + off, len - off, &st, &tail);
        if ((rc & 0xff) == SQLITE_AUTH) {
            break; /* the sandbox refuses it: the unit fails there, wherever it runs */
        }
        if (rc != SQLITE_OK) {
            /* Often a statement about a table created earlier in the same unit: it counts
             * as a write. In a sequence the statements after it still decide the route (a
             * BEGIN later on needs the transaction route), so step over it as SQLite's
             * shell would split the text. */
            if (tables != NULL && hrana__starts_ddl(sql + off, len - off)) {
                tables->ddl = true;
            }
            if (tables != NULL) tables->unknown = true; /* counts as the strongest level */
            kind = kind == 2 ? 2 : 1;
            if (!whole) break;
            off += stmt_extent(sql + off, len - off, &scratch, &scratch_cap);
            continue;
        }
        if (st == NULL) {
            break;
        }
        if (!txctl && !sqlite3_stmt_readonly(st)) {
            kind = kind == 2 ? 2 : 1;
            if (tables != NULL) {
                collect_tables(rconn, sql + off, tail, tables);
                if (hrana__starts_ddl(sql + off, tail)) tables->ddl = true;
            }
        }
        edge_store_release(rconn, st);
        off += tail;
        if (!whole) {
            break;
        }
    }
    edge_free(scratch);
    return kind;
}

enum hrana_route hrana_classify(json_t *requests, size_t n, struct edge_store_conn *rconn,
                                const struct hrana_sqlmap *sqls, bool in_txn, struct hrana_tables *tables)
{
    if (in_txn && tables == NULL) {
        return HRANA_ROUTE_TXN;
    }
    /* store_sql requests earlier in the same unit are visible to later statements:
     * classify against the stored map plus an overlay of those texts (borrowed). */
    struct hrana_sqlmap view;
    hrana_sqlmap_init(&view, 0);
    int kind = 0;
    for (size_t i = 0; i < n && (kind < 2 || tables != NULL); i++) {
        json_t *r = json_is_array(requests) ? json_array_get(requests, i) : requests;
        const char *t = json_string_value(json_object_get(r, "type"));
        size_t len = 0;
        const char *sql = NULL;
        int k = 0;
        const struct hrana_sqlmap *lookup = view.n > 0 ? &view : sqls;
        if (strcmp(t, "store_sql") == 0) {
            if (view.n == 0 && sqls != NULL) {
                struct hrana_sql *items = edge_calloc(sqls->n + n + 1, sizeof(*items));
                if (items == NULL) {
                    kind = 1;
                    break;
                }
                if (sqls->n > 0) memcpy(items, sqls->items, sqls->n * sizeof(*items));
                view.items = items;
                view.n = sqls->n;
            } else if (view.n == 0) {
                view.items = edge_calloc(n + 1, sizeof(*view.items));
                if (view.items == NULL) {
                    kind = 1;
                    break;
                }
            }
            view.items[view.n].id = (int32_t)json_integer_value(json_object_get(r, "sql_id"));
            view.items[view.n].sql = (char *)json_string_value(json_object_get(r, "sql"));
            view.n++;
            /* hrana_sqlmap_get returns the first match: move the new text first. */
            struct hrana_sql tmp = view.items[view.n - 1];
            memmove(view.items + 1, view.items, (view.n - 1) * sizeof(tmp));
            view.items[0] = tmp;
            continue;
        }
        if (strcmp(t, "execute") == 0) {
            sql = hrana__stmt_sql(json_object_get(r, "stmt"), lookup, &len);
            k = classify_sql(sql, len, rconn, false, tables);
        } else if (strcmp(t, "batch") == 0 || strcmp(t, "open_cursor") == 0) {
            size_t j;
            json_t *st;
            json_array_foreach(json_object_get(json_object_get(r, "batch"), "steps"), j, st) {
                sql = hrana__stmt_sql(json_object_get(st, "stmt"), lookup, &len);
                int kk = classify_sql(sql, len, rconn, false, tables);
                k = kk > k ? kk : k;
                if (k == 2 && tables == NULL) break;
            }
        } else if (strcmp(t, "sequence") == 0) {
            sql = hrana__stmt_sql(r, lookup, &len);
            k = classify_sql(sql, len, rconn, true, tables);
        }
        kind = k > kind ? k : kind;
    }
    edge_free(view.items); /* the texts are borrowed */
    if (in_txn) return HRANA_ROUTE_TXN;
    return kind == 2 ? HRANA_ROUTE_TXN : kind == 1 ? HRANA_ROUTE_WRITE : HRANA_ROUTE_READ;
}

