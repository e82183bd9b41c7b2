/* SPDX-License-Identifier: MIT */
/* Applying remote entries, rows: an operation is merged into the row's registers
 * (rowmeta.c) and the result is written with INSERT .. ON CONFLICT(pk) DO UPDATE,
 * UPDATE .. WHERE pk or DELETE .. WHERE pk. The rules (never REPLACE, columns by name,
 * causality beats clocks) are in apply.c's file comment. */
#include "repl/apply_int.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"

void edge__repl_record_conflict(sqlite3 *db, const char *kind, const char *table, const void *pk, size_t pklen,
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
        sqlite3_bind_int64(st, 11, (sqlite3_int64)edge_wall_ms());
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

int edge__repl_delete_row(sqlite3 *db, const struct edge__tinfo *t, const void *pk, size_t pklen)
{
    sqlite3_stmt *st = NULL;
    int rv = edge__repl_by_pk(db, "DELETE FROM ", t, pk, pklen, &st);
    if (rv == EDGE_OK && sqlite3_step(st) != SQLITE_DONE) rv = EDGE_ESTORE;
    edge__repl_done(st);
    return rv;
}

/* Write a row that exists by its registers into its table: vals (aligned, NULL =
 * leave/default) with the metadata m (already merged). If it loses a UNIQUE value it is
 * hidden instead; *out_hidden says so. */
int edge__repl_materialize(struct edge__repl_actx *x, const struct edge__tinfo *t, const void *pk, size_t pklen,
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
        if (rv == EDGE_OK) rv = edge__repl_resolve_unique(x, t, pk, pklen, fv, fl, m, &lost);
        if (rv == EDGE_OK && lost) {
            if (there) rv = edge__repl_delete_row(x->db, t, pk, pklen);
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

/* The tombstone horizon (tomb.h), read once per application: collection runs as its
 * own writer job, never inside one. */
static uint64_t merge_horizon(struct edge__repl_actx *x)
{
    if (!x->horizon_loaded) {
        static const char q[] = "SELECT value FROM _edge_gc WHERE name = 'horizon_hlc'";
        sqlite3_stmt *st = edge__repl_stmt(x->db, q, sizeof(q) - 1);
        x->horizon = 0;
        if (st != NULL) {
            if (sqlite3_step(st) == SQLITE_ROW) x->horizon = (uint64_t)sqlite3_column_int64(st, 0);
            edge__repl_done(st);
        }
        x->horizon_loaded = true;
    }
    return x->horizon;
}

static void horizon_drop_log(const char *table, const struct edge__stamp *op)
{
    /* One line per minute at most: expected never (see docs/internals/replication.md). */
    static _Atomic int64_t logged_at;
    int64_t now = (int64_t)edge_wall_ms() / 1000;
    int64_t prev = atomic_load(&logged_at);
    if (now - prev >= 60 && atomic_compare_exchange_strong(&logged_at, &prev, now)) {
        EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_REPL,
                 "tombstones: a write to %s from %s:%llu (hlc %llu) at or below the tombstone horizon lost against a "
                 "collected delete",
                 table, op->origin, (unsigned long long)op->seq, (unsigned long long)op->hlc);
    }
}

/* One row operation: in_v/in_l values and in_s stamps aligned to t (NULL / absent for a
 * column the entry does not carry). */
int edge__repl_merge_row(struct edge__repl_actx *x, const struct edge__tinfo *t, const void *pkb, size_t pklen,
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
    if (!m.found && !x->retrying && op->hlc <= merge_horizon(x)) {
        /* No metadata and stamped at or below the horizon: every entry still to come
         * stamps above it (tomb.h), so this is an old write to a row whose tombstone was
         * collected; it lost against that delete, as it would have with the tombstone. */
        x->stats->horizon_drops++;
        horizon_drop_log(t->name, op);
        edge_free(wv);
        edge_free(wl);
        edge__meta_free(&m);
        return EDGE_OK;
    }
    bool live = m.found && !m.deleted;
    /* A session record (apply_sess.c) is ordered whole by its version vector. */
    struct edge__sess_order so;
    memset(&so, 0, sizeof(so));
    so.kind = EDGE__SESS_SAME;
    edge_buf_init(&so.merged, 1);
    if (live && m.hidden == EDGE__HIDDEN_NO && strcmp(t->name, "_edge_sessions") == 0) {
        edge_buf_free(&so.merged);
        rv = edge__repl_sess_order(x, t, pkb, pklen, in_v, in_l, in_s, &m, &so);
    }
    bool whole = so.kind != EDGE__SESS_SAME;
    if (rv != EDGE_OK || so.kind == EDGE__SESS_CUR_NEWER) {
        /* an older record than the one here: it is already part of it */
        edge__repl_sess_order_free(&so);
        edge__meta_free(&m);
        edge_free(wv);
        edge_free(wl);
        return rv;
    }
    if (so.kind == EDGE__SESS_CONCURRENT_IN || so.kind == EDGE__SESS_CONCURRENT_CUR) {
        bool in_wins = so.kind == EDGE__SESS_CONCURRENT_IN;
        const struct edge__stamp *cur_s = &m.cols[so.vv_col], *in_vs = &in_s[so.vv_col];
        x->stats->conflicts++;
        x->stats->session_merges++;
        edge__repl_record_conflict(db, "session", t->name, pkb, pklen, in_wins ? in_vs : cur_s, in_wins ? cur_s : in_vs,
                                   false, NULL, NULL);
    }
    if (!whole && m.found && m.exist.origin[0] != '\0' && strcmp(m.exist.origin, op->origin) != 0 &&
        !covered(deps, op->origin, &m.exist)) {
        /* Concurrent: the writer had not seen the row's last deciding write. */
        x->stats->conflicts++;
        bool op_wins = edge__stamp_cmp(op, &m.exist) > 0;
        edge__repl_record_conflict(db, "row", t->name, pkb, pklen, op_wins ? op : &m.exist, op_wins ? &m.exist : op,
                                   op_wins ? m.deleted : false, NULL, NULL);
    }
    bool in_whole = so.kind == EDGE__SESS_IN_NEWER || so.kind == EDGE__SESS_CONCURRENT_IN;
    bool take_exist = !m.found || in_whole ||
                      (so.kind != EDGE__SESS_CONCURRENT_CUR && wins(op, op->origin, deps, &m.exist));
    bool exists_after = live || take_exist;
    bool changed = false;
    for (int i = 0; i < nc; i++) {
        bool take;
        if (whole) {
            take = in_v[i] != NULL && in_whole;
        } else {
            take = in_v[i] != NULL && (stamp_eq(&in_s[i], &m.cols[i]) || wins(&in_s[i], op->origin, deps, &m.cols[i]));
        }
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
    if (so.kind == EDGE__SESS_CONCURRENT_IN || so.kind == EDGE__SESS_CONCURRENT_CUR) {
        /* the winner's record (or the row's) with both records' writes in its vv */
        wv[so.vv_col] = (const uint8_t *)so.merged.data;
        wl[so.vv_col] = so.merged.len;
        changed = true;
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
            rv = edge__repl_materialize(x, t, pkb, pklen, wv, wl, true, &m, &hid);
            *out_applied = rv == EDGE_OK && !hid;
            edge__repl_touch(x, t->name);
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
            rv = edge__repl_materialize(x, t, pkb, pklen, wv, wl, false, &m, &hid);
            if (rv == EDGE_OK && !hid) {
                m.deleted = false;
                edge__meta_drop_image(&m);
            } else if (rv == EDGE_OK) {
                m.deleted = false;
            }
            *out_applied = rv == EDGE_OK && !hid;
            edge__repl_touch(x, t->name);
        } else {
            /* Still deleted, or hidden: the registers merge into the kept values; a
             * hidden row is tried again at the end of the batch. */
            rv = edge__meta_set_image(&m, wv, wl);
            if (exists_after) x->any_write = true;
        }
    }
    m.found = true;
    if (rv == EDGE_OK) rv = edge__meta_put(db, t, pkb, pklen, &m);
    edge__repl_sess_order_free(&so);
    edge__meta_free(&m);
    edge_free(wv);
    edge_free(wl);
    return rv;
}

int edge__repl_merge_delete(struct edge__repl_actx *x, const struct edge__tinfo *t, const void *pkb, size_t pklen,
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
        edge__repl_record_conflict(db, "row", t->name, pkb, pklen, op_wins ? op : &m.exist, op_wins ? &m.exist : op,
                                   op_wins ? m.deleted : true, NULL, NULL);
    }
    if (rv == EDGE_OK && (!m.found || wins(op, op->origin, deps, &m.exist))) {
        if ((!m.found || !m.deleted) && m.hidden == EDGE__HIDDEN_NO) {
            int r2 = edge__row_read(db, t, pkb, pklen, &m);
            if (r2 == EDGE_OK) {
                rv = edge__repl_delete_row(db, t, pkb, pklen);
                *out_applied = true;
                edge__repl_touch(x, t->name);
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
