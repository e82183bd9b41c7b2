/* SPDX-License-Identifier: MIT */
/* Applying remote entries, constraints that only a set of rows can break: UNIQUE
 * (the greater stamp keeps the value) and FOREIGN KEY (delete wins). A row that breaks
 * one is hidden (out of its table, its values in _edge_rows) and put back once its
 * conflict is gone. The rules are in apply.c's file comment; they depend only on the
 * merged registers, so every region ends the same. */
#include "repl/apply_int.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"

/* ---------------------------------------------------------------------------------- */
/* Hiding rows, UNIQUE values                                                         */
/* ---------------------------------------------------------------------------------- */

/* Take a row that is in its table out of it: its values go to the metadata (hidden). */
static int hide_row(struct edge__repl_actx *x, const struct edge__tinfo *t, const void *pk, size_t pklen, int why,
                    struct edge__rowmeta *m)
{
    int rv = edge__row_read(x->db, t, pk, pklen, m);
    if (rv == EDGE_ENOTFOUND) rv = EDGE_OK;
    if (rv == EDGE_OK) rv = edge__repl_delete_row(x->db, t, pk, pklen);
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
int edge__repl_resolve_unique(struct edge__repl_actx *x, const struct edge__tinfo *t, const void *pk, size_t pklen,
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
                if (rv == EDGE_OK) {
                    edge__repl_record_conflict(db, "unique", t->name, opk, opl, &mine, &theirs, false, t, &om);
                }
            } else if (rv == EDGE_OK) {
                *out_lost = true;
                if (!x->restoring) { /* else recorded when it was first hidden */
                    struct edge__rowmeta img;
                    memset(&img, 0, sizeof(img));
                    img.ncols = t->pk.ncols;
                    img.iv = (const uint8_t **)vals;
                    img.ivl = (size_t *)lens;
                    edge__repl_record_conflict(db, "unique", t->name, pk, pklen, &theirs, &mine, false, t, &img);
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

/* ---------------------------------------------------------------------------------- */
/* End of batch: foreign keys and hidden rows                                         */
/* ---------------------------------------------------------------------------------- */

/* Do the parents of a row (values vals aligned to t) exist? */
static int parents_present(struct edge__repl_actx *x, const struct edge__tinfo *t, const uint8_t *const *vals,
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
        const struct edge__tinfo *pt = edge__repl_tinfo(x, parent);
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

/* Put hidden rows back where their conflict is gone. */
static int restore_pass(struct edge__repl_actx *x, bool *changed)
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
        const struct edge__tinfo *t = edge__repl_tinfo(x, table);
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
            if (rv == EDGE_OK) rv = edge__repl_materialize(x, t, pk, pl, v, l, false, &m, &hid);
            x->restoring = false;
            if (rv == EDGE_OK && !hid) {
                edge__meta_drop_image(&m);
                x->stats->restored++;
                *changed = true;
                edge__repl_touch(x, t->name);
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
    struct edge__repl_actx x;
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
        edge__repl_exec(db, "SAVEPOINT edge_restore");
        rv = restore_pass(&x, &changed);
        if (rv != EDGE_OK) edge__repl_exec(db, "ROLLBACK TO edge_restore");
        edge__repl_exec(db, "RELEASE edge_restore");
        if (!changed) break;
    }
    sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_TRIGGER, old_trig, NULL);
    edge__repl_tcache_clear(&x);
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
static int fk_pass(struct edge__repl_actx *x, bool *changed)
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
        const struct edge__tinfo *t = edge__repl_tinfo(x, children[ci]);
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
            const struct edge__tinfo *pt = edge__repl_tinfo(x, parent);
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
                        edge__repl_record_conflict(db, "fk", t->name, pk, pl, &none, &m.exist, false, t, &m);
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

/* Make foreign keys and UNIQUE hold after a batch (see apply.c's file comment). */
int edge__repl_fixup(struct edge__repl_actx *x)
{
    if (!x->any_write) return EDGE_OK;
    /* The foreign-key pass when the schema has foreign keys and the batch wrote a table
     * that takes part in one (or more tables than were noted). */
    bool fk_relevant = false;
    if (edge__repl_schema_has(x->db, EDGE__Q_HAS_FKS)) {
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
