/* SPDX-License-Identifier: MIT */
/* Row ids that no two regions can both assign (docs/internals/replication.md, "Ids").
 *
 * DESIGN
 * SQLite gives a row whose INTEGER PRIMARY KEY is left out max(rowid)+1 and offers no
 * hook to choose it. Two regions inserting at once would pick the same id and one of
 * the two acknowledged rows would be lost to the merge. So on every write connection
 * of a replicating node each table with an INTEGER PRIMARY KEY gets TEMP triggers:
 *   BEFORE INSERT ... WHEN NEW.id IS NULL: insert the same row again with the id
 *   edge_id_next(max(id)) -- the smallest id above every id in the table with
 *   id % stride == this region's index -- then RAISE(IGNORE) the original row.
 * TEMP triggers are not part of the database (never replicated, never in a snapshot)
 * and fire before the schema's own triggers, so user triggers see the row once, with
 * its final id. BEFORE triggers run before SQLite chooses the id, so nothing else ever
 * sees the unstriped one. What SQLite then reports for the statement is fixed up by the
 * executor (edge_capture_ids_after): the ignored rows are not counted by
 * sqlite3_changes and RETURNING yields nothing for them, so it adds the rows the
 * triggers inserted, sets last_insert_rowid, and runs the RETURNING clause against the
 * new rows. The conflict clause of the statement is carried into the re-insert (OR
 * IGNORE / OR REPLACE / ON CONFLICT DO NOTHING); ON CONFLICT DO UPDATE cannot be, and
 * such an upsert without an id is refused (ID_REQUIRED) on a rowid table: give the id.
 * Peer entries always carry their ids and run with triggers off. */
#include "repl/repl_int.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"

#define MODE_OFF 0
#define MODE_PLAIN 1
#define MODE_REFUSE 2
#define MODE_IGNORE 3
#define MODE_REPLACE 4

struct edge__ids {
    sqlite3 *db;
    int64_t index, stride;
    int mode;                 /* of the statement running */
    int64_t main_sv, temp_sv; /* schema versions the triggers were made for */
    bool made;
    char table[256];          /* the table of the ids below */
    int64_t *ids;
    size_t n, cap;
    size_t ret_off;           /* offset of the RETURNING list in the statement's SQL, 0 none */
    char *sql;                /* the statement's SQL (for RETURNING) */
};

static void fn_mode(sqlite3_context *cx, int argc, sqlite3_value **argv)
{
    (void)argc;
    (void)argv;
    struct edge__ids *s = sqlite3_user_data(cx);
    sqlite3_result_int(cx, s->mode);
}

/* edge_id_next(max_id, table): the next id of this region's stripe above max_id. */
static void fn_next(sqlite3_context *cx, int argc, sqlite3_value **argv)
{
    (void)argc;
    struct edge__ids *s = sqlite3_user_data(cx);
    int64_t max = sqlite3_value_type(argv[0]) == SQLITE_NULL ? 0 : sqlite3_value_int64(argv[0]);
    if (max < 0) max = 0;
    int64_t base = max - max % s->stride + s->index;
    if (base <= max) base += s->stride;
    if (base <= 0 || base > INT64_MAX - 2 * s->stride) {
        sqlite3_result_error(cx, "ID_SPACE_EXHAUSTED: no striped id left above the largest id", -1);
        return;
    }
    /* SQLite may evaluate the key expression of one row twice (rowid and column): the
     * table has not changed in between, so the answer is the same; record it once. */
    if (s->n > 0 && s->ids[s->n - 1] == base) {
        sqlite3_result_int64(cx, base);
        return;
    }
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 8;
        int64_t *ni = edge_realloc(s->ids, nc * sizeof(*ni));
        if (ni == NULL) {
            sqlite3_result_error_nomem(cx);
            return;
        }
        s->ids = ni;
        s->cap = nc;
    }
    s->ids[s->n++] = base;
    const unsigned char *t = sqlite3_value_text(argv[1]);
    if (t != NULL) snprintf(s->table, sizeof(s->table), "%s", (const char *)t);
    sqlite3_result_int64(cx, base);
}

int edge__ids_attach(sqlite3 *db, int index, int stride, struct edge__ids **out)
{
    if (stride < 1 || index < 0 || index >= stride) return EDGE_EINVAL;
    struct edge__ids *s = edge_calloc(1, sizeof(*s));
    if (s == NULL) return EDGE_ENOMEM;
    s->db = db;
    s->index = index;
    s->stride = stride;
    /* Not deterministic (edge_id_next depends on the table's contents and records what
     * it gave), so never used where SQLite may evaluate it more than once. */
    if (sqlite3_create_function(db, "edge_id_mode", 0, SQLITE_UTF8 | SQLITE_DIRECTONLY, s, fn_mode, NULL, NULL) !=
            SQLITE_OK ||
        sqlite3_create_function(db, "edge_id_next", 2, SQLITE_UTF8 | SQLITE_DIRECTONLY, s, fn_next, NULL, NULL) !=
            SQLITE_OK) {
        edge_free(s);
        return EDGE_ESTORE;
    }
    *out = s;
    return EDGE_OK;
}

void edge__ids_detach(struct edge__ids *s)
{
    if (s == NULL) return;
    edge_free(s->ids);
    edge_free(s->sql);
    edge_free(s);
}

static int64_t pragma_int(sqlite3 *db, const char *q)
{
    sqlite3_stmt *st = edge__repl_stmt(db, q, strlen(q));
    int64_t v = -1;
    if (st != NULL && sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
    edge__repl_done(st);
    return v;
}

/* The re-insert of one mode: INSERT [OR ..] INTO t(cols) SELECT edge_id_next(..), NEW.c ..
 * WHERE edge_id_mode() = mode; */
static int reinsert_sql(struct edge_buf *b, const struct edge__tinfo *t, int ipk, int mode)
{
    int rv = edge_buf_puts(b, mode == MODE_IGNORE    ? "INSERT OR IGNORE INTO "
                              : mode == MODE_REPLACE ? "INSERT OR REPLACE INTO "
                                                     : "INSERT INTO ");
    if (rv == EDGE_OK) rv = edge_store_quote_ident(b, t->name);
    if (rv == EDGE_OK) rv = edge_buf_putc(b, '(');
    for (int i = 0; i < t->pk.ncols && rv == EDGE_OK; i++) {
        if (i > 0) rv = edge_buf_putc(b, ',');
        if (rv == EDGE_OK) rv = edge_store_quote_ident(b, t->cols[i]);
    }
    if (rv == EDGE_OK) rv = edge_buf_puts(b, ") SELECT ");
    for (int i = 0; i < t->pk.ncols && rv == EDGE_OK; i++) {
        if (i > 0) rv = edge_buf_putc(b, ',');
        if (rv != EDGE_OK) break;
        if (i == ipk) {
            rv = edge_buf_puts(b, "edge_id_next((SELECT max(");
            if (rv == EDGE_OK) rv = edge_store_quote_ident(b, t->cols[ipk]);
            if (rv == EDGE_OK) rv = edge_buf_puts(b, ") FROM ");
            if (rv == EDGE_OK) rv = edge_store_quote_ident(b, t->name);
            if (rv == EDGE_OK) rv = edge_buf_puts(b, "), ");
            /* the table name as a string literal */
            if (rv == EDGE_OK) rv = edge_buf_putc(b, '\'');
            for (const char *p = t->name; *p && rv == EDGE_OK; p++) {
                rv = *p == '\'' ? edge_buf_puts(b, "''") : edge_buf_putc(b, *p);
            }
            if (rv == EDGE_OK) rv = edge_buf_puts(b, "')");
        } else {
            rv = edge_buf_puts(b, "NEW.");
            if (rv == EDGE_OK) rv = edge_store_quote_ident(b, t->cols[i]);
        }
    }
    if (rv == EDGE_OK) rv = edge_buf_printf(b, " WHERE edge_id_mode() = %d; ", mode);
    return rv;
}

/* One trigger per table (each trigger is a sub-program SQLite enters for every row
 * inserted, its WHEN tested inside: one keeps that cost to one call). */
static int trigger_sql(struct edge_buf *b, const struct edge__tinfo *t, int ipk, int k)
{
    int rv = edge_buf_printf(b, "CREATE TEMP TRIGGER \"_edge_id_%d\" BEFORE INSERT ON main.", k);
    if (rv == EDGE_OK) rv = edge_store_quote_ident(b, t->name);
    if (rv == EDGE_OK) rv = edge_buf_puts(b, " WHEN (NEW.");
    if (rv == EDGE_OK) rv = edge_store_quote_ident(b, t->cols[ipk]);
    if (rv == EDGE_OK) rv = edge_buf_puts(b, " IS NULL OR NEW.");
    if (rv == EDGE_OK) rv = edge_store_quote_ident(b, t->cols[ipk]);
    if (rv == EDGE_OK) rv = edge_buf_puts(b, " = -1) AND edge_id_mode() > 0 BEGIN ");
    if (rv == EDGE_OK) {
        rv = edge_buf_printf(b, "SELECT RAISE(ABORT, 'ID_REQUIRED: an upsert (ON CONFLICT DO UPDATE) into a replicated"
                                " table must give its INTEGER PRIMARY KEY') WHERE edge_id_mode() = %d; ",
                             MODE_REFUSE);
    }
    if (rv == EDGE_OK) rv = reinsert_sql(b, t, ipk, MODE_PLAIN);
    if (rv == EDGE_OK) rv = reinsert_sql(b, t, ipk, MODE_IGNORE);
    if (rv == EDGE_OK) rv = reinsert_sql(b, t, ipk, MODE_REPLACE);
    if (rv == EDGE_OK) rv = edge_buf_puts(b, "SELECT RAISE(IGNORE); END");
    return rv;
}

int edge__ids_drop_all(sqlite3 *db)
{
    int rv = EDGE_OK;
    struct edge_buf names;
    edge_buf_init(&names, 1 << 24);
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(db, "SELECT name FROM temp.sqlite_master WHERE type = 'trigger' AND name LIKE '\\_edge\\_id\\_%' ESCAPE '\\'",
                           -1, &q, NULL) != SQLITE_OK) {
        edge_buf_free(&names);
        return EDGE_ESTORE;
    }
    while (sqlite3_step(q) == SQLITE_ROW) {
        const char *n = (const char *)sqlite3_column_text(q, 0);
        rv = edge__repl_put_str(&names, n, strlen(n));
        if (rv != EDGE_OK) break;
    }
    sqlite3_finalize(q);
    struct edge__rd r = {(const uint8_t *)names.data, names.len, 0};
    while (rv == EDGE_OK && r.off < r.len) {
        const char *n;
        size_t nl;
        if (edge__repl_get_str(&r, &n, &nl) != EDGE_OK) break;
        char *sql = sqlite3_mprintf("DROP TRIGGER IF EXISTS temp.\"%.*w\"", (int)nl, n);
        if (sql == NULL || sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) rv = EDGE_ESTORE;
        sqlite3_free(sql);
    }
    edge_buf_free(&names);
    return rv;
}

/* Bring the triggers in step with the schema (any ALTER, CREATE or DROP TABLE). */
static int sync_triggers(struct edge__ids *s)
{
    sqlite3 *db = s->db;
    int64_t msv = pragma_int(db, "PRAGMA main.schema_version");
    int64_t tsv = pragma_int(db, "PRAGMA temp.schema_version");
    if (s->made && msv == s->main_sv && tsv == s->temp_sv) return EDGE_OK;
    int rv = edge__ids_drop_all(db);
    sqlite3_stmt *q = NULL;
    /* Every user table whose INTEGER PRIMARY KEY is the rowid. */
    if (rv == EDGE_OK &&
        sqlite3_prepare_v2(db,
                           "SELECT m.name, p.name FROM main.sqlite_schema m, pragma_table_info(m.name) p"
                           " WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
                           " AND m.name NOT LIKE '\\_edge\\_%' ESCAPE '\\' AND p.pk = 1 AND upper(p.type) = 'INTEGER'"
                           " AND (SELECT count(*) FROM pragma_table_info(m.name) WHERE pk > 0) = 1"
                           " AND m.sql NOT LIKE '%WITHOUT%ROWID%' ORDER BY m.name",
                           -1, &q, NULL) != SQLITE_OK) {
        rv = EDGE_ESTORE;
    }
    int k = 0;
    while (rv == EDGE_OK && sqlite3_step(q) == SQLITE_ROW) {
        struct edge__tinfo t;
        char tname[256];
        snprintf(tname, sizeof(tname), "%s", (const char *)sqlite3_column_text(q, 0));
        const char *ipk_name = (const char *)sqlite3_column_text(q, 1);
        if (edge__tinfo_load(db, tname, &t) != EDGE_OK) continue;
        int ipk = ipk_name ? edge__tinfo_col(&t, ipk_name, strlen(ipk_name)) : -1;
        if (ipk >= 0) {
            struct edge_buf b;
            edge_buf_init(&b, 1 << 22);
            rv = trigger_sql(&b, &t, ipk, k);
            char *err = NULL;
            if (rv == EDGE_OK && sqlite3_exec(db, b.data, NULL, NULL, &err) != SQLITE_OK) rv = EDGE_ESTORE;
            sqlite3_free(err);
            edge_buf_free(&b);
        }
        edge__tinfo_free(&t);
        k++;
    }
    sqlite3_finalize(q);
    if (rv == EDGE_OK) {
        s->main_sv = pragma_int(db, "PRAGMA main.schema_version");
        s->temp_sv = pragma_int(db, "PRAGMA temp.schema_version");
        s->made = true;
    }
    return rv;
}

/* A bare word of SQL at p (case-insensitive, whole word). */
static bool word_at(const char *sql, size_t len, size_t i, const char *w)
{
    size_t n = strlen(w);
    if (i + n > len || strncasecmp(sql + i, w, n) != 0) return false;
    if (i > 0 && (isalnum((unsigned char)sql[i - 1]) || sql[i - 1] == '_')) return false;
    return i + n == len || !(isalnum((unsigned char)sql[i + n]) || sql[i + n] == '_');
}

/* The mode for a top-level statement and where its RETURNING list starts (0: none).
 * Strings, quoted identifiers and comments are skipped; only depth 0 counts. */
static int classify(const char *sql, size_t len, size_t *ret_off)
{
    *ret_off = 0;
    size_t i = 0;
    while (i < len && (isspace((unsigned char)sql[i]) || sql[i] == '(')) i++;
    bool insert = word_at(sql, len, i, "INSERT") || word_at(sql, len, i, "REPLACE") || word_at(sql, len, i, "WITH");
    if (!insert) return MODE_PLAIN; /* an UPDATE's or DELETE's triggers may insert: plain */
    int mode = word_at(sql, len, i, "REPLACE") ? MODE_REPLACE : MODE_PLAIN;
    int depth = 0;
    bool seen_insert = false;
    for (; i < len; i++) {
        char c = sql[i];
        if (c == '\'' || c == '"' || c == '`' || c == '[') {
            char end = c == '[' ? ']' : c;
            for (i++; i < len && sql[i] != end; i++) {
            }
            continue;
        }
        if (c == '-' && i + 1 < len && sql[i + 1] == '-') {
            while (i < len && sql[i] != '\n') i++;
            continue;
        }
        if (c == '/' && i + 1 < len && sql[i + 1] == '*') {
            for (i += 2; i + 1 < len && !(sql[i] == '*' && sql[i + 1] == '/'); i++) {
            }
            i++;
            continue;
        }
        if (c == '(') depth++;
        if (c == ')') depth--;
        if (depth != 0) continue;
        if (word_at(sql, len, i, "INSERT")) {
            seen_insert = true;
            size_t j = i + 6;
            while (j < len && isspace((unsigned char)sql[j])) j++;
            if (word_at(sql, len, j, "OR")) {
                j += 2;
                while (j < len && isspace((unsigned char)sql[j])) j++;
                if (word_at(sql, len, j, "IGNORE")) mode = MODE_IGNORE;
                else if (word_at(sql, len, j, "REPLACE")) mode = MODE_REPLACE;
            }
        } else if (word_at(sql, len, i, "DO") && seen_insert) {
            size_t j = i + 2;
            while (j < len && isspace((unsigned char)sql[j])) j++;
            if (word_at(sql, len, j, "UPDATE")) mode = MODE_REFUSE;
            else if (word_at(sql, len, j, "NOTHING") && mode != MODE_REFUSE) mode = MODE_IGNORE;
        } else if (word_at(sql, len, i, "RETURNING")) {
            *ret_off = i + 9;
        }
    }
    return mode;
}

int edge__ids_before(struct edge__ids *s, const char *sql, size_t len)
{
    s->n = 0;
    s->table[0] = '\0';
    s->mode = MODE_OFF;
    size_t k = 0;
    while (k < len && (isspace((unsigned char)sql[k]) || sql[k] == '(')) k++;
    if (word_at(sql, len, k, "CREATE") || word_at(sql, len, k, "ALTER") || word_at(sql, len, k, "DROP")) {
        /* The triggers name every column: a schema change must not trip over them (DROP
         * COLUMN refuses a column a trigger uses). They come back at the next statement. */
        s->made = false;
        return edge__ids_drop_all(s->db);
    }
    int rv = sync_triggers(s);
    if (rv != EDGE_OK) return rv;
    s->mode = classify(sql, len, &s->ret_off);
    edge_free(s->sql);
    s->sql = s->ret_off ? edge_strndup(sql, len) : NULL;
    if (s->ret_off && s->sql == NULL) s->ret_off = 0;
    return EDGE_OK;
}

void edge__ids_after(struct edge__ids *s, struct edge_ids_result *out)
{
    memset(out, 0, sizeof(*out));
    s->mode = MODE_OFF;
    if (s->n == 0) return;
    /* Only the rows that are there (an OR IGNORE re-insert may have been ignored). */
    sqlite3 *db = s->db;
    struct edge_buf q;
    edge_buf_init(&q, 1 << 20);
    struct edge__tinfo t;
    if (edge__tinfo_load(db, s->table, &t) != EDGE_OK) {
        edge_buf_free(&q);
        return;
    }
    int ipk = t.pk.npk == 1 ? t.pk.pk[0] : -1;
    int rv = ipk >= 0 ? edge_buf_puts(&q, "SELECT 1 FROM ") : EDGE_EINVAL;
    if (rv == EDGE_OK) rv = edge_store_quote_ident(&q, t.name);
    if (rv == EDGE_OK) rv = edge_buf_puts(&q, " WHERE ");
    if (rv == EDGE_OK) rv = edge_store_quote_ident(&q, t.cols[ipk]);
    if (rv == EDGE_OK) rv = edge_buf_puts(&q, " = ?1");
    sqlite3_stmt *st = rv == EDGE_OK ? edge__repl_stmt(db, q.data, q.len) : NULL;
    size_t kept = 0;
    for (size_t i = 0; st != NULL && i < s->n; i++) {
        sqlite3_bind_int64(st, 1, s->ids[i]);
        if (sqlite3_step(st) == SQLITE_ROW) s->ids[kept++] = s->ids[i];
        sqlite3_reset(st);
    }
    edge__repl_done(st);
    s->n = kept;
    out->assigned = kept;
    out->ids = s->ids;
    out->last = kept ? s->ids[kept - 1] : 0;
    out->table = s->table;
    if (kept > 0) sqlite3_set_last_insert_rowid(db, out->last);
    if (kept > 0 && s->ret_off && s->sql != NULL) {
        /* RETURNING, for the rows the triggers inserted: the same list over the new rows. */
        struct edge_buf sel;
        edge_buf_init(&sel, 1 << 22);
        size_t end = strlen(s->sql);
        while (end > s->ret_off && (isspace((unsigned char)s->sql[end - 1]) || s->sql[end - 1] == ';')) end--;
        int r2 = edge_buf_puts(&sel, "SELECT ");
        if (r2 == EDGE_OK) r2 = edge_buf_append(&sel, s->sql + s->ret_off, end - s->ret_off);
        if (r2 == EDGE_OK) r2 = edge_buf_puts(&sel, " FROM ");
        if (r2 == EDGE_OK) r2 = edge_store_quote_ident(&sel, t.name);
        if (r2 == EDGE_OK) r2 = edge_buf_puts(&sel, " WHERE ");
        if (r2 == EDGE_OK) r2 = edge_store_quote_ident(&sel, t.cols[ipk]);
        if (r2 == EDGE_OK) r2 = edge_buf_puts(&sel, " = ?1");
        if (r2 == EDGE_OK) {
            out->returning_sql = edge_strndup(sel.data, sel.len);
        }
        edge_buf_free(&sel);
    }
    edge_buf_free(&q);
    edge__tinfo_free(&t);
}
