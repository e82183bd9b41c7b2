/* SPDX-License-Identifier: MIT */
/* Renamed tables and columns (_edge_renames), so that an entry written under the old
 * name still applies after an ALTER TABLE .. RENAME that ran concurrently elsewhere.
 *
 * DESIGN
 * Entries name their tables and columns (apply.c matches by name). A rename that one
 * region applied before an entry written under the old name arrives would otherwise
 * drop that entry's values for the column (or the whole entry for a table) there while
 * the region that wrote it carries them into the renamed column: the regions would
 * differ. Every region records each rename it runs (at the origin when the statement
 * succeeds, on a peer when it is applied), and a name an entry uses that the table no
 * longer has is looked up here (a chain of at most 8 renames). Row metadata keyed by an
 * old column name is read the same way. */
#include "repl/repl_int.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/err.h"

/* Next identifier or keyword of sql at *i into out (unquoted). false at the end. */
static bool token(const char *sql, size_t len, size_t *i, char *out, size_t outlen)
{
    size_t k = *i;
    while (k < len && isspace((unsigned char)sql[k])) k++;
    if (k >= len) return false;
    size_t n = 0;
    char q = sql[k];
    if (q == '"' || q == '`' || q == '[' || q == '\'') {
        char end = q == '[' ? ']' : q;
        for (k++; k < len; k++) {
            if (sql[k] == end) {
                if (end != ']' && k + 1 < len && sql[k + 1] == end) {
                    k++; /* doubled quote */
                } else {
                    break;
                }
            }
            if (n + 1 < outlen) out[n++] = sql[k];
        }
        k++;
    } else {
        while (k < len && (isalnum((unsigned char)sql[k]) || sql[k] == '_' || (unsigned char)sql[k] >= 0x80)) {
            if (n + 1 < outlen) out[n++] = sql[k];
            k++;
        }
        if (n == 0) {
            if (n + 1 < outlen) out[n++] = sql[k];
            k++;
        }
    }
    out[n] = '\0';
    *i = k;
    return true;
}

/* "ALTER TABLE [schema.]t RENAME [COLUMN] a TO b" or "ALTER TABLE t RENAME TO u". */
static bool parse_rename(const char *sql, size_t len, bool *is_table, char *table, char *from, char *to)
{
    char w[256];
    size_t i = 0;
    if (!token(sql, len, &i, w, sizeof(w)) || strcasecmp(w, "ALTER") != 0) return false;
    if (!token(sql, len, &i, w, sizeof(w)) || strcasecmp(w, "TABLE") != 0) return false;
    if (!token(sql, len, &i, table, 256)) return false;
    size_t save = i;
    if (token(sql, len, &i, w, sizeof(w)) && strcmp(w, ".") == 0) {
        if (!token(sql, len, &i, table, 256)) return false;
    } else {
        i = save;
    }
    if (!token(sql, len, &i, w, sizeof(w)) || strcasecmp(w, "RENAME") != 0) return false;
    if (!token(sql, len, &i, w, sizeof(w))) return false;
    if (strcasecmp(w, "TO") == 0) {
        *is_table = true;
        snprintf(from, 256, "%s", table);
        return token(sql, len, &i, to, 256);
    }
    *is_table = false;
    if (strcasecmp(w, "COLUMN") == 0 && !token(sql, len, &i, w, sizeof(w))) return false;
    snprintf(from, 256, "%s", w);
    if (!token(sql, len, &i, w, sizeof(w)) || strcasecmp(w, "TO") != 0) return false;
    return token(sql, len, &i, to, 256);
}

int edge__renames_note(sqlite3 *db, const char *sql, size_t len)
{
    bool is_table = false;
    char table[256], from[256], to[256];
    if (!parse_rename(sql, len, &is_table, table, from, to)) return EDGE_OK;
    static const char ins[] = "INSERT INTO _edge_renames(kind, tbl, old, new) VALUES (?1, ?2, ?3, ?4)"
                              " ON CONFLICT(kind, tbl, old) DO UPDATE SET new = excluded.new";
    sqlite3_stmt *st = edge__repl_stmt(db, ins, sizeof(ins) - 1);
    if (st == NULL) return EDGE_ESTORE;
    sqlite3_bind_text(st, 1, is_table ? "table" : "column", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, is_table ? "" : table, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, from, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, to, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    edge__repl_done(st);
    if (rc != SQLITE_DONE) return EDGE_ESTORE;
    if (is_table) {
        /* The table's rows and renamed columns follow it. */
        const char *moves[] = {"UPDATE _edge_rows SET tbl = ?2 WHERE tbl = ?1",
                               "UPDATE _edge_renames SET tbl = ?2 WHERE kind = 'column' AND tbl = ?1"};
        for (int k = 0; k < 2; k++) {
            sqlite3_stmt *u = edge__repl_stmt(db, moves[k], strlen(moves[k]));
            if (u == NULL) return EDGE_ESTORE;
            sqlite3_bind_text(u, 1, from, -1, SQLITE_STATIC);
            sqlite3_bind_text(u, 2, to, -1, SQLITE_STATIC);
            rc = sqlite3_step(u);
            edge__repl_done(u);
            if (rc != SQLITE_DONE) return EDGE_ESTORE;
        }
    }
    return EDGE_OK;
}

int edge__renames_resolve(sqlite3 *db, const char *table, const char *name, size_t len, char *out, size_t outlen)
{
    static const char q[] =
        "SELECT new FROM _edge_renames WHERE kind = ?1 AND tbl = ?2 AND old = ?3 COLLATE NOCASE";
    char cur[256];
    snprintf(cur, sizeof(cur), "%.*s", (int)(len < 255 ? len : 255), name);
    bool found = false;
    for (int hop = 0; hop < 8; hop++) {
        sqlite3_stmt *st = edge__repl_stmt(db, q, sizeof(q) - 1);
        if (st == NULL) return EDGE_ESTORE;
        sqlite3_bind_text(st, 1, table ? "column" : "table", -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, table ? table : "", -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, cur, -1, SQLITE_TRANSIENT);
        bool row = sqlite3_step(st) == SQLITE_ROW;
        if (row) snprintf(cur, sizeof(cur), "%s", (const char *)sqlite3_column_text(st, 0));
        edge__repl_done(st);
        if (!row) break;
        found = true;
    }
    if (!found) return EDGE_ENOTFOUND;
    snprintf(out, outlen, "%s", cur);
    return EDGE_OK;
}

int edge__tinfo_col_db(sqlite3 *db, const struct edge__tinfo *t, const char *name, size_t len)
{
    int c = edge__tinfo_col(t, name, len);
    if (c >= 0) return c;
    char now[256];
    if (edge__renames_resolve(db, t->name, name, len, now, sizeof(now)) != EDGE_OK) return -1;
    return edge__tinfo_col(t, now, strlen(now));
}
