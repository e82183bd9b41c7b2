/* SPDX-License-Identifier: MIT */
/* Applying remote log entries deterministically (see repl.h). Runs on the writer
 * thread inside its transaction, with capture suspended.
 *
 * DESIGN
 * Rows. An operation is merged into the row's registers (rowmeta.c) and the result is
 * written with `INSERT .. ON CONFLICT(pk) DO UPDATE` of the columns the entry won, or
 * `DELETE .. WHERE pk`: never REPLACE (a delete plus an insert, which would fire
 * ON DELETE actions on the row's children). Columns are matched by name: a column the
 * entry does not carry (it was captured before an ADD COLUMN) keeps its value, or gets
 * its default in a new row; a column the entry carries and this table lacks (dropped
 * here) is ignored.
 *
 * Causality beats clocks. Entries are applied causally, so when entry E meets a
 * register last written by w, either E's writer had seen w (E.deps covers w, or w is an
 * earlier entry of E's origin) and E overwrites it whatever the stamps say, or the two
 * were concurrent and the greater (hlc, origin, seq) wins.
 *
 * Triggers and foreign-key actions are off while a batch applies: what they did at the
 * origin is part of the origin's entry and arrives once.
 *
 * Constraints that only a set of rows can break are made to hold at the end of each
 * batch by rules that depend only on the merged registers, so every region ends the
 * same whatever order it received the entries in:
 *  - UNIQUE: of two rows holding the same value of a secondary UNIQUE index, the one
 *    whose indexed columns carry the greater stamp (then the greater primary key) keeps
 *    it; the other is hidden: taken out of its table, its values kept in _edge_rows,
 *    recorded in _edge_conflicts (kind 'unique').
 *  - FOREIGN KEY (delete wins): a child whose parent does not exist at the end of a
 *    batch is hidden the same way (kind 'fk').
 * A hidden row still merges later writes into its kept values, and is put back at the
 * end of a later batch once its conflict is gone (the parent exists again, the UNIQUE
 * value is free or it now wins it). */
#include "repl/repl_int.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/alloc.h"
#include "core/log.h"
#include "repl/proto.h"

/* A table's shape, loaded once per batch (dropped at any schema change). */
struct tnode {
    struct edge__tinfo t;
    struct tnode *next;
};

struct actx {
    sqlite3 *db;
    struct edge_repl_apply_stats *stats;
    struct tnode *tables;
    char touched[8][256]; /* tables written (first few), for the foreign-key pass */
    int ntouched;
    bool touched_many;
    bool any_write;
    bool restoring; /* trying hidden rows again: a row that stays hidden is not news */
    bool no_displace; /* in a local transaction: put rows back only where nothing else moves */
    bool guarded;     /* triggers and foreign-key actions are off (or absent) for the batch */
    bool restart;     /* a schema change met an unguarded batch: run it again guarded */
};

static uint64_t wall_ms(void) { return edge_wall_ms(); }

static void tcache_clear(struct actx *x)
{
    while (x->tables != NULL) {
        struct tnode *n = x->tables;
        x->tables = n->next;
        edge__tinfo_free(&n->t);
        edge_free(n);
    }
}

/* The table's shape (pointers stay valid until tcache_clear). NULL: no such table. */
static const struct edge__tinfo *tinfo(struct actx *x, const char *table)
{
    for (struct tnode *n = x->tables; n != NULL; n = n->next) {
        if (strcmp(n->t.name, table) == 0) return &n->t;
    }
    struct tnode *n = edge_calloc(1, sizeof(*n));
    if (n == NULL) return NULL;
    if (edge__tinfo_load(x->db, table, &n->t) != EDGE_OK) {
        edge_free(n);
        return NULL;
    }
    n->next = x->tables;
    x->tables = n;
    return &n->t;
}

static void touch(struct actx *x, const char *table)
{
    x->any_write = true;
    for (int i = 0; i < x->ntouched; i++) {
        if (strcmp(x->touched[i], table) == 0) return;
    }
    if (x->ntouched < 8) {
        snprintf(x->touched[x->ntouched++], sizeof(x->touched[0]), "%s", table);
    } else {
        x->touched_many = true;
    }
}

static void record_conflict(sqlite3 *db, const char *kind, const char *table, const void *pk, size_t pklen,
                            const struct edge__stamp *w, const struct edge__stamp *l, bool l_deleted,
                            const struct edge__tinfo *t, const struct edge__rowmeta *limg)
{
    /* The loser's values by column name, in the form of a kept image (rowmeta.c). */
    struct edge_buf img;
    edge_buf_init(&img, (size_t)1 << 30);
    bool have_img = false;
    if (t != NULL && limg != NULL) {
        int n = 0;
        for (int i = 0; i < t->pk.ncols; i++) n += limg->iv[i] != NULL;
        int rv = edge_buf_putc(&img, (char)0xFE);
        if (rv == EDGE_OK) rv = edge__uvarint_put(&img, (uint64_t)n);
        for (int i = 0; i < t->pk.ncols && rv == EDGE_OK; i++) {
            if (limg->iv[i] == NULL) continue;
            rv = edge__repl_put_str(&img, t->cols[i], strlen(t->cols[i]));
            if (rv == EDGE_OK) rv = edge_buf_append(&img, limg->iv[i], limg->ivl[i]);
        }
        have_img = rv == EDGE_OK;
    }
    static const char q[] =
        "INSERT INTO _edge_conflicts(tbl, pk, winner_origin, winner_seq, winner_hlc, loser_origin,"
        " loser_seq, loser_hlc, loser_deleted, loser_image, at_ms, kind)"
        " VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)";
    sqlite3_stmt *st = edge__repl_stmt(db, q, sizeof(q) - 1);
    if (st != NULL) {
        sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
        sqlite3_bind_blob64(st, 2, pk, pklen, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, w->origin, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)w->seq);
        sqlite3_bind_int64(st, 5, (sqlite3_int64)w->hlc);
        sqlite3_bind_text(st, 6, l->origin, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 7, (sqlite3_int64)l->seq);
        sqlite3_bind_int64(st, 8, (sqlite3_int64)l->hlc);
        sqlite3_bind_int(st, 9, l_deleted ? 1 : 0);
        if (have_img) sqlite3_bind_blob64(st, 10, img.data, img.len, SQLITE_STATIC);
        sqlite3_bind_int64(st, 11, (sqlite3_int64)wall_ms());
        sqlite3_bind_text(st, 12, kind, -1, SQLITE_STATIC);
        sqlite3_step(st);
        edge__repl_done(st);
    }
    edge_buf_free(&img);
}

/* Had the writer of an entry from `origin` with dependencies `deps` seen write s? */
static bool covered(const struct edge_vclock *deps, const char *origin, const struct edge__stamp *s)
{
    if (s->origin[0] == '\0') return true;
    if (strcmp(s->origin, origin) == 0) return true; /* an earlier entry of the same origin */
    return deps != NULL && edge_vclock_get(deps, s->origin) >= s->seq;
}

static bool stamp_eq(const struct edge__stamp *a, const struct edge__stamp *b)
{
    return edge__stamp_cmp(a, b) == 0;
}

/* Does an operation stamped `in` (by an entry of `origin` with `deps`) replace the
 * register currently holding `cur`? */
static bool wins(const struct edge__stamp *in, const char *origin, const struct edge_vclock *deps,
                 const struct edge__stamp *cur)
{
    return covered(deps, origin, cur) || edge__stamp_cmp(in, cur) > 0;
}

/* "INSERT INTO t(cols) VALUES (..) ON CONFLICT(pk) DO UPDATE SET c = excluded.c" for the
 * columns with vals[i] != NULL (the primary key columns always are), bound and
 * stepped. Returns the SQLite result code. */
static int upsert(sqlite3 *db, const struct edge__tinfo *t, const uint8_t *const *vals, const size_t *lens)
{
    struct edge_buf sql;
    edge_buf_init(&sql, 1 << 20);
    int rv = edge_buf_puts(&sql, "INSERT INTO ");
    if (rv == EDGE_OK) rv = edge_store_quote_ident(&sql, t->name);
    if (rv == EDGE_OK) rv = edge_buf_putc(&sql, '(');
    int n = 0, nset = 0;
    for (int i = 0; i < t->pk.ncols && rv == EDGE_OK; i++) {
        if (vals[i] == NULL) continue;
        if (n++ > 0) rv = edge_buf_putc(&sql, ',');
        if (rv == EDGE_OK) rv = edge_store_quote_ident(&sql, t->cols[i]);
    }
    if (rv == EDGE_OK) rv = edge_buf_puts(&sql, ") VALUES (");
    for (int i = 0; i < n && rv == EDGE_OK; i++) rv = edge_buf_puts(&sql, i ? ",?" : "?");
    if (rv == EDGE_OK) rv = edge_buf_puts(&sql, ") ON CONFLICT(");
    for (int i = 0; i < t->pk.npk && rv == EDGE_OK; i++) {
        if (i > 0) rv = edge_buf_putc(&sql, ',');
        if (rv == EDGE_OK) rv = edge_store_quote_ident(&sql, t->cols[t->pk.pk[i]]);
    }
    if (rv == EDGE_OK) rv = edge_buf_puts(&sql, ") DO ");
    for (int i = 0; i < t->pk.ncols && rv == EDGE_OK; i++) {
        if (vals[i] == NULL) continue;
        bool is_pk = false;
        for (int k = 0; k < t->pk.npk; k++) is_pk = is_pk || t->pk.pk[k] == i;
        if (is_pk) continue;
        rv = edge_buf_puts(&sql, nset++ ? ", " : "UPDATE SET ");
        if (rv == EDGE_OK) rv = edge_store_quote_ident(&sql, t->cols[i]);
        if (rv == EDGE_OK) rv = edge_buf_puts(&sql, " = excluded.");
        if (rv == EDGE_OK) rv = edge_store_quote_ident(&sql, t->cols[i]);
    }
    if (rv == EDGE_OK && nset == 0) rv = edge_buf_puts(&sql, "NOTHING");
    sqlite3_stmt *st = NULL;
    int rc = SQLITE_NOMEM;
    if (rv == EDGE_OK && (st = edge__repl_stmt(db, sql.data, sql.len)) == NULL) rc = sqlite3_errcode(db);
    if (st != NULL) {
        rc = SQLITE_OK;
        int b = 1;
        for (int i = 0; i < t->pk.ncols && rc == SQLITE_OK; i++) {
            if (vals[i] == NULL) continue;
            struct edge__rd r = {vals[i], lens[i], 0};
            if (edge__repl_bind_value(st, b++, &r) != EDGE_OK) rc = SQLITE_CORRUPT;
        }
        if (rc == SQLITE_OK) {
            rc = sqlite3_step(st);
            if (rc == SQLITE_DONE) rc = SQLITE_OK;
            else rc = sqlite3_extended_errcode(db);
        }
        edge__repl_done(st);
    }
    edge_buf_free(&sql);
    return rc == SQLITE_ROW ? SQLITE_OK : rc;
}

/* "UPDATE t SET c = ? .. WHERE pk" for the non-key columns with vals[i] != NULL: a row
 * that is in its table and takes only some columns (an INSERT .. ON CONFLICT would check
 * NOT NULL on the columns it leaves out). Returns the SQLite result code; *out_changed
 * whether a row was there. */
static int update_cols(sqlite3 *db, const struct edge__tinfo *t, const uint8_t *const *vals, const size_t *lens,
                       bool *out_changed)
{
    *out_changed = false;
    struct edge_buf sql;
    edge_buf_init(&sql, 1 << 20);
    int rv = edge_buf_puts(&sql, "UPDATE ");
    if (rv == EDGE_OK) rv = edge_store_quote_ident(&sql, t->name);
    int nset = 0;
    for (int i = 0; i < t->pk.ncols && rv == EDGE_OK; i++) {
        bool is_pk = false;
        for (int k = 0; k < t->pk.npk; k++) is_pk = is_pk || t->pk.pk[k] == i;
        if (vals[i] == NULL || is_pk) continue;
        rv = edge_buf_puts(&sql, nset++ ? ", " : " SET ");
        if (rv == EDGE_OK) rv = edge_store_quote_ident(&sql, t->cols[i]);
        if (rv == EDGE_OK) rv = edge_buf_puts(&sql, " = ?");
    }
    if (nset == 0) {
        edge_buf_free(&sql);
        *out_changed = true;
        return SQLITE_OK;
    }
    if (rv == EDGE_OK) rv = edge_buf_puts(&sql, " WHERE ");
    for (int k = 0; k < t->pk.npk && rv == EDGE_OK; k++) {
        if (k > 0) rv = edge_buf_puts(&sql, " AND ");
        if (rv == EDGE_OK) rv = edge_store_quote_ident(&sql, t->cols[t->pk.pk[k]]);
        if (rv == EDGE_OK) rv = edge_buf_puts(&sql, " IS ?");
    }
    sqlite3_stmt *st = NULL;
    int rc = SQLITE_NOMEM;
    if (rv == EDGE_OK && (st = edge__repl_stmt(db, sql.data, sql.len)) == NULL) rc = sqlite3_errcode(db);
    if (st != NULL) {
        rc = SQLITE_OK;
        int b = 1;
        for (int pass = 0; pass < 2 && rc == SQLITE_OK; pass++) {
            for (int i = 0; i < t->pk.ncols && rc == SQLITE_OK; i++) {
                int col = i;
                if (pass == 1) {
                    if (i >= t->pk.npk) break;
                    col = t->pk.pk[i];
                } else {
                    bool is_pk = false;
                    for (int k = 0; k < t->pk.npk; k++) is_pk = is_pk || t->pk.pk[k] == i;
                    if (vals[i] == NULL || is_pk) continue;
                }
                struct edge__rd r = {vals[col], lens[col], 0};
                if (edge__repl_bind_value(st, b++, &r) != EDGE_OK) rc = SQLITE_CORRUPT;
            }
        }
        if (rc == SQLITE_OK) {
            rc = sqlite3_step(st);
            if (rc == SQLITE_DONE) {
                rc = SQLITE_OK;
                *out_changed = sqlite3_changes(db) > 0;
            } else {
                rc = sqlite3_extended_errcode(db);
            }
        }
        edge__repl_done(st);
    }
    edge_buf_free(&sql);
    return rc;
}

/* "<verb> "table" WHERE pk1 IS ? AND ..." prepared with the primary key bound. */
static int by_pk(sqlite3 *db, const char *verb, const struct edge__tinfo *t, const void *pk, size_t pklen,
                 sqlite3_stmt **out)
{
    struct edge_buf sql;
    edge_buf_init(&sql, 1 << 20);
    int rv = edge_buf_puts(&sql, verb);
    if (rv == EDGE_OK) rv = edge_store_quote_ident(&sql, t->name);
    if (rv == EDGE_OK) rv = edge_buf_puts(&sql, " WHERE ");
    for (int i = 0; i < t->pk.npk && rv == EDGE_OK; i++) {
        if (i > 0) rv = edge_buf_puts(&sql, " AND ");
        if (rv == EDGE_OK) rv = edge_store_quote_ident(&sql, t->cols[t->pk.pk[i]]);
        if (rv == EDGE_OK) rv = edge_buf_puts(&sql, " IS ?");
    }
    sqlite3_stmt *st = NULL;
    if (rv == EDGE_OK && (st = edge__repl_stmt(db, sql.data, sql.len)) == NULL) rv = EDGE_ESTORE;
    struct edge__rd r = {pk, pklen, 0};
    for (int i = 0; i < t->pk.npk && rv == EDGE_OK; i++) rv = edge__repl_bind_value(st, i + 1, &r);
    edge_buf_free(&sql);
    if (rv != EDGE_OK) {
        edge__repl_done(st);
        return rv;
    }
    *out = st;
    return EDGE_OK;
}

static int delete_row(sqlite3 *db, const struct edge__tinfo *t, const void *pk, size_t pklen)
{
    sqlite3_stmt *st = NULL;
    int rv = by_pk(db, "DELETE FROM ", t, pk, pklen, &st);
    if (rv == EDGE_OK && sqlite3_step(st) != SQLITE_DONE) rv = EDGE_ESTORE;
    edge__repl_done(st);
    return rv;
}

/* Take a row that is in its table out of it: its values go to the metadata (hidden). */
static int hide_row(struct actx *x, const struct edge__tinfo *t, const void *pk, size_t pklen, int why,
                    struct edge__rowmeta *m)
{
    int rv = edge__row_read(x->db, t, pk, pklen, m);
    if (rv == EDGE_ENOTFOUND) rv = EDGE_OK;
    if (rv == EDGE_OK) rv = delete_row(x->db, t, pk, pklen);
    if (rv == EDGE_OK) {
        m->hidden = why;
        rv = edge__meta_put(x->db, t, pk, pklen, m);
    }
    if (rv == EDGE_OK) x->stats->hidden++;
    return rv;
}

/* The greatest stamp among columns cols[0..n) of a row. */
static struct edge__stamp max_stamp(const struct edge__rowmeta *m, const int *cols, int n)
{
    struct edge__stamp best;
    memset(&best, 0, sizeof(best));
    for (int i = 0; i < n; i++) {
        if (cols[i] >= 0 && cols[i] < m->ncols && edge__stamp_cmp(&m->cols[cols[i]], &best) > 0) best = m->cols[cols[i]];
    }
    return best;
}

static int encode_pk(const struct edge__tinfo *t, sqlite3_stmt *st, int first, struct edge_buf *out)
{
    int rv = EDGE_OK;
    for (int k = 0; k < t->pk.npk && rv == EDGE_OK; k++) rv = edge__repl_put_value(out, sqlite3_column_value(st, first + k));
    return rv;
}

/* A row (pk, values vals aligned to t, stamps in m) could not be written because of a
 * secondary UNIQUE index. Decide against each row holding the value: hide the loser.
 * *out_lost: the incoming row lost (the caller hides it). */
static int resolve_unique(struct actx *x, const struct edge__tinfo *t, const void *pk, size_t pklen,
                          const uint8_t *const *vals, const size_t *lens, const struct edge__rowmeta *m,
                          bool *out_lost)
{
    *out_lost = false;
    sqlite3 *db = x->db;
    static const char qi[] = "SELECT name FROM pragma_index_list(?1) WHERE \"unique\" = 1 AND origin != 'pk'";
    sqlite3_stmt *li = NULL;
    if (sqlite3_prepare_v2(db, qi, -1, &li, NULL) != SQLITE_OK) return EDGE_ESTORE;
    sqlite3_bind_text(li, 1, t->name, -1, SQLITE_STATIC);
    int rv = EDGE_OK;
    bool found_any = false;
    while (rv == EDGE_OK && !*out_lost && sqlite3_step(li) == SQLITE_ROW) {
        const char *iname = (const char *)sqlite3_column_text(li, 0);
        int cols[64], n = 0;
        bool usable = true;
        sqlite3_stmt *ii = NULL;
        if (sqlite3_prepare_v2(db, "SELECT cid FROM pragma_index_info(?1) ORDER BY seqno", -1, &ii, NULL) != SQLITE_OK) {
            rv = EDGE_ESTORE;
            break;
        }
        sqlite3_bind_text(ii, 1, iname, -1, SQLITE_TRANSIENT);
        while (sqlite3_step(ii) == SQLITE_ROW && n < 64) {
            int cid = sqlite3_column_int(ii, 0);
            if (cid < 0 || cid >= t->pk.ncols) usable = false; /* expression or rowid: not resolvable here */
            cols[n++] = cid;
        }
        sqlite3_finalize(ii);
        if (!usable || n == 0) continue;
        bool has_null = false;
        for (int k = 0; k < n; k++) {
            /* NULLs never collide; an unknown value is the default, not known here */
            has_null = has_null || vals[cols[k]] == NULL || (lens[cols[k]] == 1 && vals[cols[k]][0] == 0);
        }
        if (has_null) continue;
        struct edge_buf sql;
        edge_buf_init(&sql, 1 << 20);
        rv = edge_buf_puts(&sql, "SELECT ");
        for (int k = 0; k < t->pk.npk && rv == EDGE_OK; k++) {
            if (k > 0) rv = edge_buf_putc(&sql, ',');
            if (rv == EDGE_OK) rv = edge_store_quote_ident(&sql, t->cols[t->pk.pk[k]]);
        }
        if (rv == EDGE_OK) rv = edge_buf_puts(&sql, " FROM ");
        if (rv == EDGE_OK) rv = edge_store_quote_ident(&sql, t->name);
        if (rv == EDGE_OK) rv = edge_buf_puts(&sql, " WHERE ");
        for (int k = 0; k < n && rv == EDGE_OK; k++) {
            if (k > 0) rv = edge_buf_puts(&sql, " AND ");
            if (rv == EDGE_OK) rv = edge_store_quote_ident(&sql, t->cols[cols[k]]);
            if (rv == EDGE_OK) rv = edge_buf_puts(&sql, " = ?");
        }
        sqlite3_stmt *q = NULL;
        if (rv == EDGE_OK && sqlite3_prepare_v2(db, sql.data, (int)sql.len, &q, NULL) != SQLITE_OK) rv = EDGE_ESTORE;
        edge_buf_free(&sql);
        for (int k = 0; k < n && rv == EDGE_OK; k++) {
            struct edge__rd r = {vals[cols[k]], lens[cols[k]], 0};
            rv = edge__repl_bind_value(q, k + 1, &r);
        }
        /* Collect the holders first: hiding one changes the table under the query. */
        struct edge_buf holders;
        edge_buf_init(&holders, 1 << 24);
        int nh = 0;
        while (rv == EDGE_OK && q != NULL && sqlite3_step(q) == SQLITE_ROW && nh < 64) {
            struct edge_buf one;
            edge_buf_init(&one, 1 << 20);
            rv = encode_pk(t, q, 0, &one);
            if (rv == EDGE_OK && !(one.len == pklen && memcmp(one.data, pk, pklen) == 0)) {
                rv = edge__repl_put_str(&holders, one.data, one.len);
                nh++;
            }
            edge_buf_free(&one);
        }
        sqlite3_finalize(q);
        struct edge__rd hr = {(const uint8_t *)holders.data, holders.len, 0};
        struct edge__stamp mine = max_stamp(m, cols, n);
        for (int h = 0; h < nh && rv == EDGE_OK && !*out_lost; h++) {
            const char *opk;
            size_t opl;
            if (edge__repl_get_str(&hr, &opk, &opl) != EDGE_OK) break;
            found_any = true;
            struct edge__rowmeta om;
            rv = edge__meta_get(db, t, opk, opl, &om);
            struct edge__stamp theirs = max_stamp(&om, cols, n);
            int c = edge__stamp_cmp(&mine, &theirs);
            if (c == 0) {
                size_t ml = pklen < opl ? pklen : opl;
                c = memcmp(pk, opk, ml);
                if (c == 0) c = pklen < opl ? -1 : pklen > opl ? 1 : 0;
            }
            if (x->no_displace) c = -1;
            if (rv == EDGE_OK && c > 0) {
                if (!om.found) {
                    /* a row written here without metadata (before replication): it loses */
                    om.found = true;
                }
                rv = hide_row(x, t, opk, opl, EDGE__HIDDEN_UNIQUE, &om);
                if (rv == EDGE_OK) record_conflict(db, "unique", t->name, opk, opl, &mine, &theirs, false, t, &om);
            } else if (rv == EDGE_OK) {
                *out_lost = true;
                if (!x->restoring) { /* else recorded when it was first hidden */
                    struct edge__rowmeta img;
                    memset(&img, 0, sizeof(img));
                    img.ncols = t->pk.ncols;
                    img.iv = (const uint8_t **)vals;
                    img.ivl = (size_t *)lens;
                    record_conflict(db, "unique", t->name, pk, pklen, &theirs, &mine, false, t, &img);
                }
            }
            edge__meta_free(&om);
        }
        edge_buf_free(&holders);
    }
    sqlite3_finalize(li);
    if (rv == EDGE_OK && !found_any && !*out_lost) rv = EDGE_ECONFLICT; /* not a conflict we can resolve */
    return rv;
}

/* Write a row that exists by its registers into its table: vals (aligned, NULL =
 * leave/default) with the metadata m (already merged). If it loses a UNIQUE value it is
 * hidden instead; *out_hidden says so. */
static int materialize(struct actx *x, const struct edge__tinfo *t, const void *pk, size_t pklen,
                       const uint8_t *const *vals, const size_t *lens, bool present, struct edge__rowmeta *m,
                       bool *out_hidden)
{
    *out_hidden = false;
    int rv = EDGE_OK;
    bool partial = false;
    for (int i = 0; i < t->pk.ncols; i++) partial = partial || vals[i] == NULL;
    for (int attempt = 0; attempt < 16; attempt++) {
        int rc;
        if (present && partial) {
            bool there = false;
            rc = update_cols(x->db, t, vals, lens, &there);
            if (rc == SQLITE_OK && !there) rc = upsert(x->db, t, vals, lens); /* not there after all */
        } else {
            rc = upsert(x->db, t, vals, lens);
        }
        if (rc == SQLITE_OK) return EDGE_OK;
        if (rc != SQLITE_CONSTRAINT_UNIQUE) return EDGE_ESTORE;
        /* The full row as it would be: the current values under the new ones. */
        struct edge__rowmeta cur;
        memset(&cur, 0, sizeof(cur));
        const uint8_t **fv = edge_calloc((size_t)t->pk.ncols + 1, sizeof(*fv));
        size_t *fl = edge_calloc((size_t)t->pk.ncols + 1, sizeof(*fl));
        cur.ncols = t->pk.ncols;
        cur.iv = edge_calloc((size_t)t->pk.ncols + 1, sizeof(*cur.iv));
        cur.ivl = edge_calloc((size_t)t->pk.ncols + 1, sizeof(*cur.ivl));
        cur.cols = edge_calloc((size_t)t->pk.ncols + 1, sizeof(*cur.cols));
        rv = fv && fl && cur.iv && cur.ivl && cur.cols ? EDGE_OK : EDGE_ENOMEM;
        bool there = false;
        if (rv == EDGE_OK) {
            int r2 = edge__row_read(x->db, t, pk, pklen, &cur);
            there = r2 == EDGE_OK;
            if (r2 != EDGE_OK && r2 != EDGE_ENOTFOUND) rv = r2;
        }
        for (int i = 0; rv == EDGE_OK && i < t->pk.ncols; i++) {
            fv[i] = vals[i] ? vals[i] : cur.iv[i];
            fl[i] = vals[i] ? lens[i] : cur.ivl[i];
        }
        bool lost = false;
        if (rv == EDGE_OK) rv = resolve_unique(x, t, pk, pklen, fv, fl, m, &lost);
        if (rv == EDGE_OK && lost) {
            if (there) rv = delete_row(x->db, t, pk, pklen);
            if (rv == EDGE_OK) rv = edge__meta_set_image(m, fv, fl);
            if (rv == EDGE_OK) {
                m->hidden = EDGE__HIDDEN_UNIQUE;
                if (!x->restoring) x->stats->hidden++;
                *out_hidden = true;
            }
        }
        edge_free(fv);
        edge_free(fl);
        edge__meta_free(&cur);
        if (rv != EDGE_OK || lost) return rv;
    }
    return EDGE_ECONFLICT;
}

/* One row operation: in_v/in_l values and in_s stamps aligned to t (NULL / absent for a
 * column the entry does not carry). */
static int merge_row(struct actx *x, const struct edge__tinfo *t, const void *pkb, size_t pklen,
                     const uint8_t *const *in_v, const size_t *in_l, const struct edge__stamp *in_s,
                     const struct edge__stamp *op, const struct edge_vclock *deps, bool *out_applied)
{
    sqlite3 *db = x->db;
    int nc = t->pk.ncols;
    struct edge__rowmeta m;
    const uint8_t **wv = edge_calloc((size_t)nc + 1, sizeof(*wv));
    size_t *wl = edge_calloc((size_t)nc + 1, sizeof(*wl));
    int rv = wv && wl ? edge__meta_get(db, t, pkb, pklen, &m) : EDGE_ENOMEM;
    if (rv != EDGE_OK) {
        edge_free(wv);
        edge_free(wl);
        if (wv && wl) edge__meta_free(&m);
        return rv;
    }
    *out_applied = false;
    bool live = m.found && !m.deleted;
    if (m.found && m.exist.origin[0] != '\0' && strcmp(m.exist.origin, op->origin) != 0 &&
        !covered(deps, op->origin, &m.exist)) {
        /* Concurrent: the writer had not seen the row's last deciding write. */
        x->stats->conflicts++;
        bool op_wins = edge__stamp_cmp(op, &m.exist) > 0;
        record_conflict(db, "row", t->name, pkb, pklen, op_wins ? op : &m.exist, op_wins ? &m.exist : op,
                        op_wins ? m.deleted : false, NULL, NULL);
    }
    bool take_exist = !m.found || wins(op, op->origin, deps, &m.exist);
    bool exists_after = live || take_exist;
    bool changed = false;
    for (int i = 0; i < nc; i++) {
        bool take = in_v[i] != NULL && (stamp_eq(&in_s[i], &m.cols[i]) || wins(&in_s[i], op->origin, deps, &m.cols[i]));
        if (take) {
            /* Equal stamps are not "nothing to do": one entry may hold several writes of
             * the same row (a group of jobs, a transaction), all with its stamp, and the
             * last one must land. */
            changed = true;
            m.cols[i] = in_s[i];
        }
        wv[i] = take ? in_v[i] : NULL;
        wl[i] = take ? in_l[i] : 0;
    }
    for (int k = 0; k < t->pk.npk; k++) {
        int c = t->pk.pk[k];
        if (wv[c] == NULL) { /* the key is the key: always written */
            wv[c] = in_v[c];
            wl[c] = in_l[c];
        }
    }
    if (take_exist) m.exist = *op;
    if (exists_after && live && m.hidden == EDGE__HIDDEN_NO) {
        if (changed) {
            bool hid = false;
            rv = materialize(x, t, pkb, pklen, wv, wl, true, &m, &hid);
            *out_applied = rv == EDGE_OK && !hid;
            touch(x, t->name);
        }
    } else {
        /* Not in the table (deleted, new, or hidden): the kept values under the won ones. */
        for (int i = 0; i < nc; i++) {
            if (wv[i] == NULL) {
                wv[i] = m.iv[i];
                wl[i] = m.ivl[i];
            }
        }
        if (exists_after && m.hidden == EDGE__HIDDEN_NO) {
            bool hid = false;
            rv = materialize(x, t, pkb, pklen, wv, wl, false, &m, &hid);
            if (rv == EDGE_OK && !hid) {
                m.deleted = false;
                edge__meta_drop_image(&m);
            } else if (rv == EDGE_OK) {
                m.deleted = false;
            }
            *out_applied = rv == EDGE_OK && !hid;
            touch(x, t->name);
        } else {
            /* Still deleted, or hidden: the registers merge into the kept values; a
             * hidden row is tried again at the end of the batch. */
            rv = edge__meta_set_image(&m, wv, wl);
            if (exists_after) x->any_write = true;
        }
    }
    m.found = true;
    if (rv == EDGE_OK) rv = edge__meta_put(db, t, pkb, pklen, &m);
    edge__meta_free(&m);
    edge_free(wv);
    edge_free(wl);
    return rv;
}

static int merge_delete(struct actx *x, const struct edge__tinfo *t, const void *pkb, size_t pklen,
                        const struct edge__stamp *op, const struct edge_vclock *deps, bool *out_applied)
{
    sqlite3 *db = x->db;
    struct edge__rowmeta m;
    int rv = edge__meta_get(db, t, pkb, pklen, &m);
    *out_applied = false;
    if (rv == EDGE_OK && m.found && m.exist.origin[0] != '\0' && strcmp(m.exist.origin, op->origin) != 0 &&
        !covered(deps, op->origin, &m.exist)) {
        x->stats->conflicts++;
        bool op_wins = edge__stamp_cmp(op, &m.exist) > 0;
        record_conflict(db, "row", t->name, pkb, pklen, op_wins ? op : &m.exist, op_wins ? &m.exist : op,
                        op_wins ? m.deleted : true, NULL, NULL);
    }
    if (rv == EDGE_OK && (!m.found || wins(op, op->origin, deps, &m.exist))) {
        if ((!m.found || !m.deleted) && m.hidden == EDGE__HIDDEN_NO) {
            int r2 = edge__row_read(db, t, pkb, pklen, &m);
            if (r2 == EDGE_OK) {
                rv = delete_row(db, t, pkb, pklen);
                *out_applied = true;
                touch(x, t->name);
            } else if (r2 != EDGE_ENOTFOUND) {
                rv = r2;
            }
        }
        m.found = true;
        m.deleted = true;
        m.hidden = EDGE__HIDDEN_NO;
        m.exist = *op;
        if (rv == EDGE_OK) rv = edge__meta_put(db, t, pkb, pklen, &m);
    }
    edge__meta_free(&m);
    return rv;
}

/* A schema change that fails because its effect is already here (the same change made
 * concurrently elsewhere): "already exists", "duplicate column name", or a DROP of
 * something already gone. */
static bool ddl_already_applied(const char *sql, const char *err)
{
    if (err == NULL) return false;
    if (strstr(err, "already exists") != NULL || strncmp(err, "duplicate column name", 21) == 0) return true;
    while (*sql && isspace((unsigned char)*sql)) sql++;
    bool is_drop = strncasecmp(sql, "DROP", 4) == 0 || (strncasecmp(sql, "ALTER", 5) == 0 && strcasestr(sql, " DROP ") != NULL);
    return is_drop && strncmp(err, "no such", 7) == 0;
}

/* Apply the operations of one payload (no sequence checks). */
static int apply_payload(struct actx *x, const char *origin, uint64_t seq, uint64_t hlc,
                         const struct edge_vclock *deps, const uint8_t *payload, size_t payload_len, char *errmsg,
                         size_t errmsg_len)
{
    sqlite3 *db = x->db;
    struct edge__rd rd = {payload, payload_len, 0};
    uint8_t version;
    uint64_t n_ops;
    if (edge__repl_get_u8(&rd, &version) != EDGE_OK || version != EDGE_REPL_PAYLOAD_VERSION ||
        edge__repl_get_varint(&rd, &n_ops) != EDGE_OK) {
        snprintf(errmsg, errmsg_len, "entry %s:%llu: bad payload header", origin, (unsigned long long)seq);
        return EDGE_ECORRUPT;
    }
    int rv = EDGE_OK;
    struct edge_buf pkb;
    edge_buf_init(&pkb, 1 << 20);
    struct edge__stamp opst;
    snprintf(opst.origin, sizeof(opst.origin), "%s", origin);
    opst.seq = seq;
    opst.hlc = hlc;
    for (uint64_t k = 0; k < n_ops && rv == EDGE_OK; k++) {
        const char *tname;
        size_t tlen;
        uint8_t kind;
        if (edge__repl_get_str(&rd, &tname, &tlen) != EDGE_OK || edge__repl_get_u8(&rd, &kind) != EDGE_OK ||
            tlen >= 256 || memchr(tname, 0, tlen) != NULL) {
            rv = EDGE_ECORRUPT;
            break;
        }
        char table[256];
        memcpy(table, tname, tlen);
        table[tlen] = '\0';
        if (kind == EDGE_REPL_OP_DDL) {
            const char *sql;
            size_t sl;
            if (edge__repl_get_str(&rd, &sql, &sl) != EDGE_OK) {
                rv = EDGE_ECORRUPT;
                break;
            }
            if (!x->guarded) {
                /* It may add a trigger or a foreign key the rest of the batch must not
                 * run: PRAGMA foreign_keys cannot change inside the transaction, so the
                 * batch starts again with both off. */
                x->restart = true;
                rv = EDGE_EBUSY;
                break;
            }
            char *text = edge_strndup(sql, sl);
            char *err = NULL;
            if (text != NULL) edge__ids_drop_all(db); /* see ids.c: recreated at the next local write */
            if (text == NULL) {
                rv = EDGE_ENOMEM;
            } else if (sqlite3_exec(db, text, NULL, NULL, &err) == SQLITE_OK) {
                rv = edge__renames_note(db, text, sl);
            } else {
                if (ddl_already_applied(text, err)) {
                    x->stats->ddl_skipped++;
                    EDGE_LOG(EDGE_LOG_INFO, EDGE_MOD_REPL, "apply %s:%llu: schema change already in effect: %s",
                             origin, (unsigned long long)seq, err);
                } else {
                    /* Never marked applied: the entry fails as a whole. */
                    snprintf(errmsg, errmsg_len, "entry %s:%llu: schema change failed: %s", origin,
                             (unsigned long long)seq, err ? err : "?");
                    rv = EDGE_ESTORE;
                }
            }
            sqlite3_free(err);
            edge_free(text);
            tcache_clear(x);
            x->any_write = true;
            x->touched_many = true;
            continue;
        }
        if (kind != EDGE_REPL_OP_ROW && kind != EDGE_REPL_OP_DELETE) {
            rv = EDGE_ECORRUPT;
            break;
        }
        uint64_t n;
        if (edge__repl_get_varint(&rd, &n) != EDGE_OK || n == 0 || n > 32767) {
            rv = EDGE_ECORRUPT;
            break;
        }
        /* names, then values, then (rows) stamps */
        struct edge__rd names = rd;
        for (uint64_t i = 0; i < n && rv == EDGE_OK; i++) {
            const char *s;
            size_t sl;
            if (edge__repl_get_str(&rd, &s, &sl) != EDGE_OK) rv = EDGE_ECORRUPT;
        }
        struct edge__rd vals = rd;
        for (uint64_t i = 0; i < n && rv == EDGE_OK; i++) {
            if (edge__repl_skip_value(&rd) != EDGE_OK) rv = EDGE_ECORRUPT;
        }
        struct edge__stamp *stamps = NULL;
        if (rv == EDGE_OK && kind == EDGE_REPL_OP_ROW) {
            stamps = edge_calloc((size_t)n, sizeof(*stamps));
            rv = stamps == NULL ? EDGE_ENOMEM : edge__stamps_decode(&rd, stamps, (int)n);
        }
        if (rv != EDGE_OK) {
            edge_free(stamps);
            break;
        }
        const struct edge__tinfo *t = tinfo(x, table);
        if (t == NULL) {
            /* renamed here (concurrently with the write, or since) */
            char now[256];
            if (edge__renames_resolve(db, NULL, table, strlen(table), now, sizeof(now)) == EDGE_OK) t = tinfo(x, now);
        }
        if (t == NULL || t->pk.npk == 0) {
            snprintf(errmsg, errmsg_len, "entry %s:%llu: table %s is missing or has no primary key here", origin,
                     (unsigned long long)seq, table);
            edge_free(stamps);
            rv = EDGE_ESTORE;
            break;
        }
        int nc = t->pk.ncols;
        const uint8_t **iv = edge_calloc((size_t)nc + 1, sizeof(*iv));
        size_t *il = edge_calloc((size_t)nc + 1, sizeof(*il));
        struct edge__stamp *is = edge_calloc((size_t)nc + 1, sizeof(*is));
        rv = iv && il && is ? EDGE_OK : EDGE_ENOMEM;
        for (uint64_t i = 0; i < n && rv == EDGE_OK; i++) {
            const char *s;
            size_t sl;
            edge__repl_get_str(&names, &s, &sl); /* validated above */
            size_t start = vals.off;
            edge__repl_skip_value(&vals);
            int c = edge__tinfo_col_db(db, t, s, sl);
            if (c < 0) continue; /* dropped here: ignored */
            if (iv[c] != NULL) {
                rv = EDGE_ECORRUPT; /* a column named twice */
                break;
            }
            iv[c] = vals.p + start;
            il[c] = vals.off - start;
            if (stamps) is[c] = stamps[i];
        }
        edge_buf_reset(&pkb);
        for (int i = 0; i < t->pk.npk && rv == EDGE_OK; i++) {
            int c = t->pk.pk[i];
            if (iv[c] == NULL) {
                snprintf(errmsg, errmsg_len, "entry %s:%llu: table %s: the entry lacks primary key column %s", origin,
                         (unsigned long long)seq, table, t->cols[c]);
                rv = EDGE_ESTORE;
            } else {
                rv = edge_buf_append(&pkb, iv[c], il[c]);
            }
        }
        bool applied = false;
        if (rv == EDGE_OK && kind == EDGE_REPL_OP_ROW) {
            rv = merge_row(x, t, pkb.data ? pkb.data : "", pkb.len, iv, il, is, &opst, deps, &applied);
        } else if (rv == EDGE_OK) {
            rv = merge_delete(x, t, pkb.data ? pkb.data : "", pkb.len, &opst, deps, &applied);
        }
        edge_free(iv);
        edge_free(il);
        edge_free(is);
        edge_free(stamps);
        if (rv != EDGE_OK) {
            if (rv != EDGE_ECORRUPT && errmsg[0] == '\0') {
                snprintf(errmsg, errmsg_len, "entry %s:%llu: applying to %s failed: %s", origin,
                         (unsigned long long)seq, table, sqlite3_errmsg(db));
            }
            break;
        }
        if (applied) x->stats->rows++;
    }
    edge_buf_free(&pkb);
    if (rv == EDGE_OK && rd.off != rd.len) rv = EDGE_ECORRUPT;
    if (rv == EDGE_ECORRUPT && errmsg[0] == '\0') {
        snprintf(errmsg, errmsg_len, "entry %s:%llu: malformed payload", origin, (unsigned long long)seq);
    }
    return rv;
}

/* Sequence and dependency checks; EDGE_OK applicable, 1 duplicate, EDGE_EAGAIN not yet. */
static int applicable(sqlite3 *db, const char *origin, uint64_t seq, const struct edge_vclock *deps,
                      struct edge_repl_apply_stats *stats, char *errmsg, size_t errmsg_len)
{
    struct edge_vclock vv;
    edge_vclock_init(&vv);
    int rv = edge_repl_vv_load(db, &vv);
    if (rv != EDGE_OK) {
        snprintf(errmsg, errmsg_len, "cannot read the version vector");
        edge_vclock_close(&vv);
        return rv;
    }
    uint64_t have = edge_vclock_get(&vv, origin);
    if (seq <= have) {
        stats->duplicates++;
        rv = 1;
    } else if (seq != have + 1) {
        stats->deferred++;
        rv = EDGE_EAGAIN;
    } else {
        for (size_t i = 0; i < deps->n_entries; i++) {
            const char *r = deps->entries[i].region;
            if (strcmp(r, origin) != 0 && edge_vclock_get(&vv, r) < deps->entries[i].n) {
                stats->deferred++;
                rv = EDGE_EAGAIN;
                break;
            }
        }
    }
    edge_vclock_close(&vv);
    return rv;
}

static int apply_one(struct actx *x, const char *origin, uint64_t seq, uint64_t hlc, int consistency,
                     const struct edge_vclock *deps, const uint8_t *payload, size_t payload_len, char *errmsg,
                     size_t errmsg_len)
{
    int rv = applicable(x->db, origin, seq, deps, x->stats, errmsg, errmsg_len);
    if (rv == 1) return EDGE_OK;
    if (rv != EDGE_OK) return rv;
    rv = apply_payload(x, origin, seq, hlc, deps, payload, payload_len, errmsg, errmsg_len);
    if (rv != EDGE_OK) return rv;
    /* Keep the entry for relaying to regions that have not seen it yet. */
    rv = edge__repl_log_put(x->db, origin, seq, hlc, consistency, deps, payload, payload_len);
    if (rv != EDGE_OK) {
        snprintf(errmsg, errmsg_len, "cannot append entry %s:%llu to the log", origin, (unsigned long long)seq);
        return rv;
    }
    x->stats->applied++;
    if (hlc > x->stats->max_hlc) x->stats->max_hlc = hlc;
    return EDGE_OK;
}

int edge_repl_apply_entry(sqlite3 *db, const char *origin, uint64_t seq, uint64_t hlc, int consistency,
                          const struct edge_vclock *deps, const uint8_t *payload, size_t payload_len,
                          struct edge_repl_apply_stats *stats, char *errmsg, size_t errmsg_len)
{
    struct actx x;
    memset(&x, 0, sizeof(x));
    x.db = db;
    x.stats = stats;
    x.guarded = true; /* the caller's transaction, the caller's settings */
    int rv = apply_one(&x, origin, seq, hlc, consistency, deps, payload, payload_len, errmsg, errmsg_len);
    tcache_clear(&x);
    return rv;
}

/* ---------------------------------------------------------------------------------- */
/* End of batch: foreign keys and hidden rows                                         */
/* ---------------------------------------------------------------------------------- */

/* Do the parents of a row (values vals aligned to t) exist? */
static int parents_present(struct actx *x, const struct edge__tinfo *t, const uint8_t *const *vals,
                           const size_t *lens, bool *out)
{
    *out = true;
    sqlite3_stmt *fk = NULL;
    if (sqlite3_prepare_v2(x->db, "SELECT id, \"table\", \"from\", \"to\" FROM pragma_foreign_key_list(?1) ORDER BY id, seq",
                           -1, &fk, NULL) != SQLITE_OK) {
        return EDGE_ESTORE;
    }
    sqlite3_bind_text(fk, 1, t->name, -1, SQLITE_STATIC);
    int rv = EDGE_OK;
    int rc = sqlite3_step(fk);
    while (rv == EDGE_OK && *out && rc == SQLITE_ROW) {
        int id = sqlite3_column_int(fk, 0);
        char parent[256];
        snprintf(parent, sizeof(parent), "%s", (const char *)sqlite3_column_text(fk, 1));
        const struct edge__tinfo *pt = tinfo(x, parent);
        struct edge_buf sql;
        edge_buf_init(&sql, 1 << 20);
        rv = edge_buf_puts(&sql, "SELECT 1 FROM ");
        if (rv == EDGE_OK) rv = edge_store_quote_ident(&sql, parent);
        if (rv == EDGE_OK) rv = edge_buf_puts(&sql, " WHERE ");
        int from[64], k = 0;
        bool null_key = false;
        while (rv == EDGE_OK && rc == SQLITE_ROW && sqlite3_column_int(fk, 0) == id && k < 64) {
            const char *fname = (const char *)sqlite3_column_text(fk, 2);
            const char *to = (const char *)sqlite3_column_text(fk, 3);
            int c = edge__tinfo_col(t, fname, strlen(fname));
            from[k] = c;
            if (c < 0 || vals[c] == NULL || (lens[c] == 1 && vals[c][0] == 0)) null_key = true;
            if (k > 0) rv = edge_buf_puts(&sql, " AND ");
            if (rv == EDGE_OK) {
                if (to == NULL && pt != NULL && k < pt->pk.npk) to = pt->cols[pt->pk.pk[k]];
                rv = to ? edge_store_quote_ident(&sql, to) : EDGE_ENOTFOUND;
            }
            if (rv == EDGE_OK) rv = edge_buf_puts(&sql, " = ?");
            k++;
            rc = sqlite3_step(fk);
        }
        if (rv == EDGE_ENOTFOUND || pt == NULL) {
            rv = EDGE_OK; /* the parent table is not there: nothing can be checked */
            edge_buf_free(&sql);
            continue;
        }
        if (rv == EDGE_OK && !null_key) {
            sqlite3_stmt *q = NULL;
            if (sqlite3_prepare_v2(x->db, sql.data, (int)sql.len, &q, NULL) != SQLITE_OK) rv = EDGE_ESTORE;
            for (int i = 0; i < k && rv == EDGE_OK; i++) {
                struct edge__rd r = {vals[from[i]], lens[from[i]], 0};
                rv = edge__repl_bind_value(q, i + 1, &r);
            }
            if (rv == EDGE_OK) *out = sqlite3_step(q) == SQLITE_ROW;
            sqlite3_finalize(q);
        }
        edge_buf_free(&sql);
    }
    sqlite3_finalize(fk);
    return rv;
}

static bool any_hidden(sqlite3 *db);
static int exec(sqlite3 *db, const char *sql);
static bool schema_has(sqlite3 *db, const char *q);
#define Q_HAS_TRIGGERS "SELECT 1 FROM main.sqlite_schema WHERE type = 'trigger' LIMIT 1"
#define Q_HAS_FKS \
    "SELECT 1 FROM main.sqlite_schema WHERE type = 'table' AND sql LIKE '%REFERENCES%' LIMIT 1"

/* Put hidden rows back where their conflict is gone. */
static int restore_pass(struct actx *x, bool *changed)
{
    sqlite3 *db = x->db;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT tbl, pk FROM _edge_rows WHERE hidden != 0 ORDER BY tbl, pk", -1, &st, NULL) !=
        SQLITE_OK) {
        return EDGE_ESTORE;
    }
    /* Collect first: restoring changes _edge_rows. */
    struct edge_buf list;
    edge_buf_init(&list, (size_t)1 << 30);
    int rv = EDGE_OK, n = 0;
    while (rv == EDGE_OK && sqlite3_step(st) == SQLITE_ROW && n < 100000) {
        const char *tb = (const char *)sqlite3_column_text(st, 0);
        rv = edge__repl_put_str(&list, tb, strlen(tb));
        if (rv == EDGE_OK) {
            rv = edge__repl_put_str(&list, sqlite3_column_blob(st, 1) ? sqlite3_column_blob(st, 1) : "",
                                    (size_t)sqlite3_column_bytes(st, 1));
        }
        n++;
    }
    sqlite3_finalize(st);
    struct edge__rd r = {(const uint8_t *)list.data, list.len, 0};
    for (int i = 0; i < n && rv == EDGE_OK; i++) {
        const char *tb, *pk;
        size_t tl, pl;
        if (edge__repl_get_str(&r, &tb, &tl) != EDGE_OK || edge__repl_get_str(&r, &pk, &pl) != EDGE_OK) break;
        char table[256];
        snprintf(table, sizeof(table), "%.*s", (int)(tl < 255 ? tl : 255), tb);
        const struct edge__tinfo *t = tinfo(x, table);
        if (t == NULL) continue; /* the table was dropped: nothing to restore into */
        struct edge__rowmeta m;
        rv = edge__meta_get(db, t, pk, pl, &m);
        bool ok = false;
        if (rv == EDGE_OK && m.found && !m.deleted && m.hidden != EDGE__HIDDEN_NO) {
            bool have_pk = true;
            for (int k = 0; k < t->pk.npk; k++) have_pk = have_pk && m.iv[t->pk.pk[k]] != NULL;
            if (have_pk) rv = parents_present(x, t, m.iv, m.ivl, &ok);
        }
        if (rv == EDGE_OK && ok) {
            bool hid = false;
            const uint8_t **v = edge_calloc((size_t)t->pk.ncols + 1, sizeof(*v));
            size_t *l = edge_calloc((size_t)t->pk.ncols + 1, sizeof(*l));
            rv = v && l ? EDGE_OK : EDGE_ENOMEM;
            for (int c = 0; rv == EDGE_OK && c < t->pk.ncols; c++) {
                v[c] = m.iv[c];
                l[c] = m.ivl[c];
            }
            int was = m.hidden;
            m.hidden = EDGE__HIDDEN_NO;
            /* materialize copies the image into m when the row stays hidden */
            x->restoring = true;
            if (rv == EDGE_OK) rv = materialize(x, t, pk, pl, v, l, false, &m, &hid);
            x->restoring = false;
            if (rv == EDGE_OK && !hid) {
                edge__meta_drop_image(&m);
                x->stats->restored++;
                *changed = true;
                touch(x, t->name);
            } else if (rv == EDGE_OK && was == EDGE__HIDDEN_FK) {
                m.hidden = was;
            }
            if (rv == EDGE_OK) rv = edge__meta_put(db, t, pk, pl, &m);
            edge_free(v);
            edge_free(l);
        }
        edge__meta_free(&m);
    }
    edge_buf_free(&list);
    return rv;
}

int edge__repl_restore_local(sqlite3 *db)
{
    if (!any_hidden(db)) return EDGE_OK;
    struct actx x;
    memset(&x, 0, sizeof(x));
    struct edge_repl_apply_stats st;
    memset(&st, 0, sizeof(st));
    x.db = db;
    x.stats = &st;
    x.no_displace = true;
    /* Putting a row back is not a user write: no trigger may see it. */
    int old_trig = 1;
    sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_TRIGGER, -1, &old_trig);
    sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_TRIGGER, 0, NULL);
    int rv = EDGE_OK;
    for (int round = 0; round < 8 && rv == EDGE_OK; round++) {
        bool changed = false;
        exec(db, "SAVEPOINT edge_restore");
        rv = restore_pass(&x, &changed);
        if (rv != EDGE_OK) exec(db, "ROLLBACK TO edge_restore");
        exec(db, "RELEASE edge_restore");
        if (!changed) break;
    }
    sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_TRIGGER, old_trig, NULL);
    tcache_clear(&x);
    return rv;
}

/* Does table `name` take part in a foreign key (as child or parent)? */
static bool in_fk(sqlite3 *db, const char *name)
{
    static const char q[] =
        "SELECT 1 FROM sqlite_schema m, pragma_foreign_key_list(m.name) f WHERE m.type = 'table'"
        " AND (m.name = ?1 OR f.\"table\" = ?1 COLLATE NOCASE) LIMIT 1";
    sqlite3_stmt *st = edge__repl_stmt(db, q, sizeof(q) - 1);
    if (st == NULL) return true;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    bool r = sqlite3_step(st) == SQLITE_ROW;
    edge__repl_done(st);
    return r;
}

/* Hide every child row whose parent is missing (delete wins). */
static int fk_pass(struct actx *x, bool *changed)
{
    sqlite3 *db = x->db;
    sqlite3_stmt *tl = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT DISTINCT m.name FROM sqlite_schema m, pragma_foreign_key_list(m.name) f"
                           " WHERE m.type = 'table' AND m.name NOT LIKE '\\_edge\\_%' ESCAPE '\\' ORDER BY m.name",
                           -1, &tl, NULL) != SQLITE_OK) {
        return EDGE_ESTORE;
    }
    int rv = EDGE_OK;
    char children[64][256];
    int nch = 0;
    while (sqlite3_step(tl) == SQLITE_ROW && nch < 64) {
        snprintf(children[nch++], sizeof(children[0]), "%s", (const char *)sqlite3_column_text(tl, 0));
    }
    sqlite3_finalize(tl);
    for (int ci = 0; ci < nch && rv == EDGE_OK; ci++) {
        const struct edge__tinfo *t = tinfo(x, children[ci]);
        if (t == NULL || t->pk.npk == 0) continue;
        sqlite3_stmt *fk = NULL;
        if (sqlite3_prepare_v2(db, "SELECT id, \"table\", \"from\", \"to\" FROM pragma_foreign_key_list(?1) ORDER BY id, seq",
                               -1, &fk, NULL) != SQLITE_OK) {
            rv = EDGE_ESTORE;
            break;
        }
        sqlite3_bind_text(fk, 1, t->name, -1, SQLITE_STATIC);
        int rc = sqlite3_step(fk);
        while (rv == EDGE_OK && rc == SQLITE_ROW) {
            int id = sqlite3_column_int(fk, 0);
            char parent[256];
            snprintf(parent, sizeof(parent), "%s", (const char *)sqlite3_column_text(fk, 1));
            const struct edge__tinfo *pt = tinfo(x, parent);
            struct edge_buf nn, cond, sql;
            edge_buf_init(&nn, 1 << 20);
            edge_buf_init(&cond, 1 << 20);
            edge_buf_init(&sql, 1 << 20);
            int k = 0;
            bool usable = pt != NULL;
            while (rc == SQLITE_ROW && sqlite3_column_int(fk, 0) == id) {
                const char *fname = (const char *)sqlite3_column_text(fk, 2);
                const char *to = (const char *)sqlite3_column_text(fk, 3);
                if (to == NULL && pt != NULL && k < pt->pk.npk) to = pt->cols[pt->pk.pk[k]];
                if (to == NULL || fname == NULL) usable = false;
                if (usable) {
                    edge_buf_puts(&nn, k ? " AND c." : "c.");
                    edge_store_quote_ident(&nn, fname);
                    edge_buf_puts(&nn, " IS NOT NULL");
                    edge_buf_puts(&cond, k ? " AND p." : "p.");
                    edge_store_quote_ident(&cond, to);
                    edge_buf_puts(&cond, " = c.");
                    edge_store_quote_ident(&cond, fname);
                }
                k++;
                rc = sqlite3_step(fk);
            }
            if (usable) {
                edge_buf_puts(&sql, "SELECT ");
                for (int i = 0; i < t->pk.npk; i++) {
                    edge_buf_puts(&sql, i ? ", c." : "c.");
                    edge_store_quote_ident(&sql, t->cols[t->pk.pk[i]]);
                }
                edge_buf_puts(&sql, " FROM ");
                edge_store_quote_ident(&sql, t->name);
                edge_buf_puts(&sql, " c WHERE ");
                edge_buf_append(&sql, nn.data, nn.len);
                edge_buf_puts(&sql, " AND NOT EXISTS (SELECT 1 FROM ");
                edge_store_quote_ident(&sql, parent);
                edge_buf_puts(&sql, " p WHERE ");
                edge_buf_append(&sql, cond.data, cond.len);
                edge_buf_puts(&sql, ")");
                sqlite3_stmt *q = NULL;
                struct edge_buf orphans;
                edge_buf_init(&orphans, (size_t)1 << 30);
                int no = 0;
                if (sql.data == NULL || sqlite3_prepare_v2(db, sql.data, (int)sql.len, &q, NULL) != SQLITE_OK) {
                    rv = EDGE_ESTORE;
                }
                while (rv == EDGE_OK && sqlite3_step(q) == SQLITE_ROW && no < 100000) {
                    struct edge_buf one;
                    edge_buf_init(&one, 1 << 20);
                    rv = encode_pk(t, q, 0, &one);
                    if (rv == EDGE_OK) rv = edge__repl_put_str(&orphans, one.data ? one.data : "", one.len);
                    edge_buf_free(&one);
                    no++;
                }
                sqlite3_finalize(q);
                struct edge__rd r = {(const uint8_t *)orphans.data, orphans.len, 0};
                for (int i = 0; i < no && rv == EDGE_OK; i++) {
                    const char *pk;
                    size_t pl;
                    if (edge__repl_get_str(&r, &pk, &pl) != EDGE_OK) break;
                    struct edge__rowmeta m;
                    rv = edge__meta_get(db, t, pk, pl, &m);
                    if (rv == EDGE_OK) {
                        m.found = true;
                        rv = hide_row(x, t, pk, pl, EDGE__HIDDEN_FK, &m);
                    }
                    if (rv == EDGE_OK) {
                        struct edge__stamp none;
                        memset(&none, 0, sizeof(none));
                        record_conflict(db, "fk", t->name, pk, pl, &none, &m.exist, false, t, &m);
                        *changed = true;
                    }
                    edge__meta_free(&m);
                }
                edge_buf_free(&orphans);
            }
            edge_buf_free(&nn);
            edge_buf_free(&cond);
            edge_buf_free(&sql);
        }
        sqlite3_finalize(fk);
    }
    return rv;
}

static bool any_hidden(sqlite3 *db)
{
    static const char q[] = "SELECT 1 FROM _edge_rows WHERE hidden != 0 LIMIT 1";
    sqlite3_stmt *st = edge__repl_stmt(db, q, sizeof(q) - 1);
    if (st == NULL) return false;
    bool r = sqlite3_step(st) == SQLITE_ROW;
    edge__repl_done(st);
    return r;
}

/* Make foreign keys and UNIQUE hold after a batch (see the file comment). */
static int fixup(struct actx *x)
{
    if (!x->any_write) return EDGE_OK;
    /* The foreign-key pass when the schema has foreign keys and the batch wrote a table
     * that takes part in one (or more tables than were noted). */
    bool fk_relevant = false;
    if (schema_has(x->db, Q_HAS_FKS)) {
        fk_relevant = x->touched_many;
        for (int i = 0; i < x->ntouched && !fk_relevant; i++) fk_relevant = in_fk(x->db, x->touched[i]);
    }
    int rv = EDGE_OK;
    for (int round = 0; round < 16 && rv == EDGE_OK; round++) {
        bool changed = false;
        if (any_hidden(x->db)) rv = restore_pass(x, &changed);
        if (rv == EDGE_OK && (fk_relevant || changed)) rv = fk_pass(x, &changed);
        if (!changed) break;
        fk_relevant = true;
    }
    return rv;
}

/* ---------------------------------------------------------------------------------- */
/* Batches                                                                            */
/* ---------------------------------------------------------------------------------- */

/* A failure that may go away by itself (the batch is tried again as a whole). */
static bool transient(int errcode, int rv)
{
    if (rv == EDGE_ENOMEM || rv == EDGE_EBUSY || rv == EDGE_EIO) return true;
    int rc = errcode & 0xff;
    return rc == SQLITE_BUSY || rc == SQLITE_LOCKED || rc == SQLITE_NOMEM || rc == SQLITE_IOERR ||
           rc == SQLITE_FULL || rc == SQLITE_INTERRUPT;
}

static int exec(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

/* Keep a failed entry; EDGE_OK, with *out_new true the first time (to log it once). */
static int keep_failed(sqlite3 *db, const struct edge_repl_entry *e, const char *reason, bool *out_new)
{
    struct edge_buf d;
    edge_buf_init(&d, 1 << 20);
    int rv = edge_vclock_encode(&e->deps, &d);
    static const char q[] =
        "INSERT INTO _edge_apply_errors(origin, seq, hlc, consistency, deps, payload, reason, first_ms, last_ms,"
        " attempts) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?8,1) ON CONFLICT(origin, seq) DO UPDATE SET"
        " reason = excluded.reason, last_ms = excluded.last_ms, attempts = attempts + 1";
    sqlite3_stmt *st = rv == EDGE_OK ? edge__repl_stmt(db, q, sizeof(q) - 1) : NULL;
    if (st == NULL) {
        edge_buf_free(&d);
        return EDGE_ESTORE;
    }
    static const char qe[] = "SELECT 1 FROM _edge_apply_errors WHERE origin = ?1 AND seq = ?2";
    sqlite3_stmt *se = edge__repl_stmt(db, qe, sizeof(qe) - 1);
    *out_new = true;
    if (se != NULL) {
        sqlite3_bind_text(se, 1, e->origin, -1, SQLITE_STATIC);
        sqlite3_bind_int64(se, 2, (sqlite3_int64)e->seq);
        *out_new = sqlite3_step(se) != SQLITE_ROW;
        edge__repl_done(se);
    }
    sqlite3_bind_text(st, 1, e->origin, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)e->seq);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)e->hlc);
    sqlite3_bind_int(st, 4, e->consistency);
    sqlite3_bind_blob64(st, 5, d.data ? d.data : "", d.len, SQLITE_STATIC);
    sqlite3_bind_blob64(st, 6, e->payload ? (const void *)e->payload : "", e->payload_len, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, reason, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 8, (sqlite3_int64)wall_ms());
    rv = sqlite3_step(st) == SQLITE_DONE ? EDGE_OK : EDGE_ESTORE;
    edge__repl_done(st);
    edge_buf_free(&d);
    return rv;
}

struct batch_env {
    int old_trig;
    int old_fk;
    bool trig_off; /* user triggers exist: switched off for the batch */
    bool fk_off;   /* foreign keys exist and were on: switched off for the batch */
    bool began;
};

/* Does the schema have any row of this kind? (A text test: every FOREIGN KEY clause
 * says REFERENCES.) Both settings below expire every prepared statement of the
 * connection when they change, so a batch changes them only when they matter. */
static bool schema_has(sqlite3 *db, const char *q)
{
    sqlite3_stmt *st = edge__repl_stmt(db, q, strlen(q));
    bool r = st == NULL || sqlite3_step(st) == SQLITE_ROW; /* unknown: assume so */
    edge__repl_done(st);
    return r;
}



static int batch_begin(sqlite3 *db, struct batch_env *env, bool force, char *errmsg, size_t errmsg_len)
{
    memset(env, 0, sizeof(*env));
    env->old_fk = 1;
    if (!sqlite3_get_autocommit(db)) {
        snprintf(errmsg, errmsg_len, "apply: the connection is inside a transaction");
        return EDGE_EINVAL;
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "PRAGMA foreign_keys", -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
        env->old_fk = sqlite3_column_int(st, 0);
    }
    sqlite3_finalize(st);
    /* Foreign-key actions and user triggers ran at the origin; their writes are in the
     * entry. PRAGMA foreign_keys cannot change inside a transaction: set it first. */
    /* -1 reads the setting without changing it (the out value is the state after a call) */
    sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_TRIGGER, -1, &env->old_trig);
    /* Only when the schema has them (force: always, for a batch with schema changes,
     * which may add them: apply_payload asks for the restart). */
    env->trig_off = env->old_trig && (force || schema_has(db, Q_HAS_TRIGGERS));
    env->fk_off = env->old_fk && (force || schema_has(db, Q_HAS_FKS));
    if (env->trig_off) sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_TRIGGER, 0, NULL);
    if (env->fk_off) exec(db, "PRAGMA foreign_keys = OFF");
    if (exec(db, "BEGIN IMMEDIATE") != SQLITE_OK) {
        snprintf(errmsg, errmsg_len, "apply: cannot begin: %s", sqlite3_errmsg(db));
        if (env->fk_off) exec(db, "PRAGMA foreign_keys = ON");
        if (env->trig_off) sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_TRIGGER, env->old_trig, NULL);
        return EDGE_EBUSY;
    }
    env->began = true;
    return EDGE_OK;
}

static int batch_end(sqlite3 *db, struct batch_env *env, const struct edge_repl_local *local, bool commit,
                     const struct edge_repl_apply_stats *st)
{
    int rv = EDGE_OK;
    if (commit && local != NULL && local->hlc != NULL && st->max_hlc != 0) {
        /* Before COMMIT: from the moment the rows are visible, a local write that sees
         * them stamps later than they do. */
        if (local->mu) pthread_mutex_lock((pthread_mutex_t *)local->mu);
        edge_hlc_update(local->hlc, st->max_hlc);
        if (local->mu) pthread_mutex_unlock((pthread_mutex_t *)local->mu);
    }
    if (commit && exec(db, "COMMIT") != SQLITE_OK) {
        rv = EDGE_ESTORE;
        commit = false;
    }
    if (!commit && !sqlite3_get_autocommit(db)) exec(db, "ROLLBACK");
    if (env->fk_off) exec(db, "PRAGMA foreign_keys = ON");
    if (env->trig_off) sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_TRIGGER, env->old_trig, NULL);
    return rv;
}

static int apply_batch_once(sqlite3 *db, const struct edge_repl_local *local, uint64_t max_skew_ms,
                            const struct edge_repl_entry *entries, size_t count, struct edge_repl_apply_stats *stats,
                            bool force, bool *out_restart, char *errmsg, size_t errmsg_len)
{
    *out_restart = false;
    struct batch_env env;
    int rv = batch_begin(db, &env, force, errmsg, errmsg_len);
    if (rv != EDGE_OK) return rv;
    struct actx x;
    memset(&x, 0, sizeof(x));
    x.db = db;
    x.guarded = (env.trig_off || !env.old_trig) && (env.fk_off || !env.old_fk);
    struct edge_repl_apply_stats st;
    memset(&st, 0, sizeof(st));
    x.stats = &st;
    uint64_t skew = max_skew_ms ? max_skew_ms : 500;
    uint64_t now = wall_ms();
    bool skew_logged = false;
    for (size_t i = 0; i < count && rv == EDGE_OK; i++) {
        const struct edge_repl_entry *e = &entries[i];
        char err[512] = "";
        exec(db, "SAVEPOINT edge_apply");
        uint64_t before = st.applied;
        int arv = apply_one(&x, e->origin, e->seq, e->hlc, e->consistency, &e->deps, e->payload, e->payload_len, err,
                            sizeof(err));
        int ec = sqlite3_errcode(db); /* before the savepoint statements overwrite it */
        if (arv == EDGE_OK) {
            exec(db, "RELEASE edge_apply");
            if (st.applied != before && EDGE_HLC_MS(e->hlc) > now + skew) {
                st.skewed++;
                if (!skew_logged) {
                    EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_REPL,
                             "entry %s:%llu is stamped %llu ms ahead of this clock (max_clock_skew_ms %llu)",
                             e->origin, (unsigned long long)e->seq,
                             (unsigned long long)(EDGE_HLC_MS(e->hlc) - now), (unsigned long long)skew);
                    skew_logged = true;
                }
            }
            continue;
        }
        exec(db, "ROLLBACK TO edge_apply");
        exec(db, "RELEASE edge_apply");
        tcache_clear(&x);
        if (x.restart) {
            rv = EDGE_EBUSY;
            break;
        }
        if (arv == EDGE_EAGAIN) continue; /* not applicable yet; the sender resends from our ACK */
        if (transient(ec, arv)) {
            snprintf(errmsg, errmsg_len, "%s", err[0] ? err : edge_strerror(arv));
            rv = arv;
            break;
        }
        /* For good: keep it with the reason, relay it, and go past it so the entries
         * behind it are not blocked. */
        bool fresh = false;
        int krv = keep_failed(db, e, err[0] ? err : edge_strerror(arv), &fresh);
        if (krv == EDGE_OK) krv = edge__repl_log_put(db, e->origin, e->seq, e->hlc, e->consistency, &e->deps,
                                                     e->payload, e->payload_len);
        if (krv != EDGE_OK) {
            snprintf(errmsg, errmsg_len, "cannot keep failed entry %s:%llu", e->origin, (unsigned long long)e->seq);
            rv = krv;
            break;
        }
        if (fresh) {
            EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_REPL, "entry %s:%llu cannot be applied, kept in _edge_apply_errors: %s",
                     e->origin, (unsigned long long)e->seq, err[0] ? err : edge_strerror(arv));
        }
        st.apply_errors++;
        if (e->hlc > st.max_hlc) st.max_hlc = e->hlc;
    }
    if (rv == EDGE_OK) {
        rv = fixup(&x);
        if (rv != EDGE_OK) snprintf(errmsg, errmsg_len, "apply: constraint repair failed: %s", sqlite3_errmsg(db));
    }
    tcache_clear(&x);
    int erv = batch_end(db, &env, local, rv == EDGE_OK, &st);
    if (rv == EDGE_OK) rv = erv;
    if (rv == EDGE_OK) {
        stats->applied += st.applied;
        stats->duplicates += st.duplicates;
        stats->deferred += st.deferred;
        stats->rows += st.rows;
        stats->conflicts += st.conflicts;
        stats->hidden += st.hidden;
        stats->restored += st.restored;
        stats->apply_errors += st.apply_errors;
        stats->skewed += st.skewed;
        stats->ddl_skipped += st.ddl_skipped;
        if (st.max_hlc > stats->max_hlc) stats->max_hlc = st.max_hlc;
    } else if (!x.restart) {
        stats->deferred += st.deferred;
    }
    *out_restart = x.restart;
    return rv;
}

int edge_repl_apply_batch(sqlite3 *db, const struct edge_repl_local *local, uint64_t max_skew_ms,
                          const struct edge_repl_entry *entries, size_t count, struct edge_repl_apply_stats *stats,
                          char *errmsg, size_t errmsg_len)
{
    bool restart = false;
    int rv = apply_batch_once(db, local, max_skew_ms, entries, count, stats, false, &restart, errmsg, errmsg_len);
    if (restart) {
        errmsg[0] = '\0';
        rv = apply_batch_once(db, local, max_skew_ms, entries, count, stats, true, &restart, errmsg, errmsg_len);
    }
    return rv;
}

int edge_repl_retry_apply_errors(sqlite3 *db, const struct edge_repl_local *local,
                                 struct edge_repl_apply_stats *stats, uint64_t *out_left, char *errmsg,
                                 size_t errmsg_len)
{
    *out_left = 0;
    struct batch_env env;
    int rv = batch_begin(db, &env, true, errmsg, errmsg_len);
    if (rv != EDGE_OK) return rv;
    struct actx x;
    memset(&x, 0, sizeof(x));
    x.db = db;
    struct edge_repl_apply_stats st;
    memset(&st, 0, sizeof(st));
    x.guarded = true;
    x.stats = &st;
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(db, "SELECT origin, seq, hlc, deps, payload FROM _edge_apply_errors ORDER BY hlc, origin, seq",
                           -1, &q, NULL) != SQLITE_OK) {
        batch_end(db, &env, local, false, &st);
        snprintf(errmsg, errmsg_len, "cannot read _edge_apply_errors");
        return EDGE_ESTORE;
    }
    while (rv == EDGE_OK && sqlite3_step(q) == SQLITE_ROW) {
        char origin[EDGE_VCLOCK_REGION_MAX + 1];
        snprintf(origin, sizeof(origin), "%s", (const char *)sqlite3_column_text(q, 0));
        uint64_t seq = (uint64_t)sqlite3_column_int64(q, 1), hlc = (uint64_t)sqlite3_column_int64(q, 2);
        struct edge_vclock deps;
        edge_vclock_init(&deps);
        size_t used;
        char err[512] = "";
        int arv = edge_vclock_decode(&deps, sqlite3_column_blob(q, 3), (size_t)sqlite3_column_bytes(q, 3), &used);
        exec(db, "SAVEPOINT edge_retry");
        if (arv == EDGE_OK) {
            arv = apply_payload(&x, origin, seq, hlc, &deps, sqlite3_column_blob(q, 4),
                                (size_t)sqlite3_column_bytes(q, 4), err, sizeof(err));
        }
        int ec = sqlite3_errcode(db);
        if (arv == EDGE_OK) {
            exec(db, "RELEASE edge_retry");
            sqlite3_stmt *d = NULL;
            if (sqlite3_prepare_v2(db, "DELETE FROM _edge_apply_errors WHERE origin = ?1 AND seq = ?2", -1, &d, NULL) ==
                SQLITE_OK) {
                sqlite3_bind_text(d, 1, origin, -1, SQLITE_STATIC);
                sqlite3_bind_int64(d, 2, (sqlite3_int64)seq);
                sqlite3_step(d);
            }
            sqlite3_finalize(d);
            st.applied++;
            if (hlc > st.max_hlc) st.max_hlc = hlc;
        } else {
            exec(db, "ROLLBACK TO edge_retry");
            exec(db, "RELEASE edge_retry");
            tcache_clear(&x);
            if (transient(ec, arv)) {
                rv = arv;
                snprintf(errmsg, errmsg_len, "%s", err[0] ? err : edge_strerror(arv));
            } else {
                sqlite3_stmt *u = NULL;
                if (sqlite3_prepare_v2(db, "UPDATE _edge_apply_errors SET reason = ?3, attempts = attempts + 1,"
                                           " last_ms = ?4 WHERE origin = ?1 AND seq = ?2", -1, &u, NULL) == SQLITE_OK) {
                    sqlite3_bind_text(u, 1, origin, -1, SQLITE_STATIC);
                    sqlite3_bind_int64(u, 2, (sqlite3_int64)seq);
                    sqlite3_bind_text(u, 3, err[0] ? err : edge_strerror(arv), -1, SQLITE_TRANSIENT);
                    sqlite3_bind_int64(u, 4, (sqlite3_int64)wall_ms());
                    sqlite3_step(u);
                }
                sqlite3_finalize(u);
                (*out_left)++;
            }
        }
        edge_vclock_close(&deps);
    }
    sqlite3_finalize(q);
    if (rv == EDGE_OK) rv = fixup(&x);
    tcache_clear(&x);
    int erv = batch_end(db, &env, local, rv == EDGE_OK, &st);
    if (rv == EDGE_OK) rv = erv;
    if (rv == EDGE_OK) {
        stats->applied += st.applied;
        stats->rows += st.rows;
        stats->conflicts += st.conflicts;
        stats->hidden += st.hidden;
        stats->restored += st.restored;
        if (st.max_hlc > stats->max_hlc) stats->max_hlc = st.max_hlc;
    }
    return rv;
}

uint64_t edge_repl_apply_error_count(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    uint64_t n = 0;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM _edge_apply_errors", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        n = (uint64_t)sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return n;
}

int edge_repl_hlc_recover(sqlite3 *db, struct edge_hlc *hlc)
{
    sqlite3_stmt *st = NULL;
    uint64_t best = 0;
    const char *qs[] = {"SELECT max(hlc) FROM _edge_log", "SELECT max(hlc) FROM _edge_rows"};
    for (int i = 0; i < 2; i++) {
        if (sqlite3_prepare_v2(db, qs[i], -1, &st, NULL) != SQLITE_OK) {
            sqlite3_finalize(st);
            return EDGE_ESTORE;
        }
        if (sqlite3_step(st) == SQLITE_ROW && (uint64_t)sqlite3_column_int64(st, 0) > best) {
            best = (uint64_t)sqlite3_column_int64(st, 0);
        }
        sqlite3_finalize(st);
    }
    if (best != 0) edge_hlc_update(hlc, best);
    return EDGE_OK;
}

int edge_repl_payload_walk(const uint8_t *p, size_t len, edge_repl_op_cb cb, void *ud)
{
    struct edge__rd rd = {p, len, 0};
    uint8_t version;
    uint64_t n_ops;
    if (edge__repl_get_u8(&rd, &version) != EDGE_OK || version != EDGE_REPL_PAYLOAD_VERSION ||
        edge__repl_get_varint(&rd, &n_ops) != EDGE_OK) {
        return EDGE_ECORRUPT;
    }
    for (uint64_t k = 0; k < n_ops; k++) {
        const char *t;
        size_t tl;
        uint8_t kind;
        uint64_t n = 0;
        if (edge__repl_get_str(&rd, &t, &tl) != EDGE_OK || edge__repl_get_u8(&rd, &kind) != EDGE_OK) {
            return EDGE_ECORRUPT;
        }
        if (kind == EDGE_REPL_OP_DDL) {
            const char *s;
            size_t sl;
            if (edge__repl_get_str(&rd, &s, &sl) != EDGE_OK) return EDGE_ECORRUPT;
        } else if (kind == EDGE_REPL_OP_ROW || kind == EDGE_REPL_OP_DELETE) {
            if (edge__repl_get_varint(&rd, &n) != EDGE_OK || n == 0 || n > 32767) return EDGE_ECORRUPT;
            for (uint64_t i = 0; i < n; i++) {
                const char *s;
                size_t sl;
                if (edge__repl_get_str(&rd, &s, &sl) != EDGE_OK) return EDGE_ECORRUPT;
            }
            for (uint64_t i = 0; i < n; i++) {
                if (edge__repl_skip_value(&rd) != EDGE_OK) return EDGE_ECORRUPT;
            }
            if (kind == EDGE_REPL_OP_ROW) {
                for (uint64_t i = 0; i < n; i++) {
                    const char *o;
                    size_t ol;
                    uint64_t v;
                    if (edge__repl_get_str(&rd, &o, &ol) != EDGE_OK || edge__repl_get_varint(&rd, &v) != EDGE_OK ||
                        edge__repl_get_varint(&rd, &v) != EDGE_OK) {
                        return EDGE_ECORRUPT;
                    }
                }
            }
        } else {
            return EDGE_ECORRUPT;
        }
        char table[256];
        snprintf(table, sizeof(table), "%.*s", (int)(tl < 255 ? tl : 255), t);
        if (cb) cb(ud, table, kind, (int)n);
    }
    return rd.off == rd.len ? EDGE_OK : EDGE_ECORRUPT;
}
