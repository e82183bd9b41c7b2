/* SPDX-License-Identifier: MIT */
/* Applying remote log entries deterministically (see repl.h). Runs on the writer
 * thread inside its transaction, with capture suspended. */
#include "repl/repl_int.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/log.h"

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void record_conflict(sqlite3 *db, const char *table, const void *pk, size_t pklen, const char *w_origin,
                            uint64_t w_seq, uint64_t w_hlc, const char *l_origin, uint64_t l_seq, uint64_t l_hlc,
                            bool l_deleted, const void *l_image, size_t l_len)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO _edge_conflicts(tbl, pk, winner_origin, winner_seq, winner_hlc, loser_origin,"
                           " loser_seq, loser_hlc, loser_deleted, loser_image, at_ms)"
                           " VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)",
                           -1, &st, NULL) != SQLITE_OK) {
        return;
    }
    sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
    sqlite3_bind_blob64(st, 2, pk, pklen, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, w_origin, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)w_seq);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)w_hlc);
    sqlite3_bind_text(st, 6, l_origin, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)l_seq);
    sqlite3_bind_int64(st, 8, (sqlite3_int64)l_hlc);
    sqlite3_bind_int(st, 9, l_deleted ? 1 : 0);
    if (l_image != NULL) {
        sqlite3_bind_blob64(st, 10, l_image, l_len, SQLITE_STATIC);
    }
    sqlite3_bind_int64(st, 11, (sqlite3_int64)wall_ms());
    sqlite3_step(st);
    sqlite3_finalize(st);
}

static void name_col(void *ud, int cid, const char *name, int pk)
{
    (void)pk;
    char(*names)[128] = ud;
    if (cid < 64) snprintf(names[cid], 128, "%s", name);
}

/* The first 64 column names of table; their count, or -1. */
static int column_names(sqlite3 *db, const char *table, char names[64][128])
{
    int n = edge_store_table_columns(db, table, name_col, names);
    return n > 64 ? 64 : n;
}

static int apply_upsert(sqlite3 *db, const char *table, uint64_t ncols, struct edge__rd vals)
{
    struct edge_buf sql;
    edge_buf_init(&sql, 1 << 20);
    int rv = edge_buf_puts(&sql, "INSERT OR REPLACE INTO ");
    if (rv == EDGE_OK) rv = edge_store_quote_ident(&sql, table);
    if (rv == EDGE_OK) rv = edge_buf_puts(&sql, " VALUES (");
    for (uint64_t i = 0; i < ncols && rv == EDGE_OK; i++) {
        rv = edge_buf_puts(&sql, i ? ",?" : "?");
    }
    if (rv == EDGE_OK) rv = edge_buf_putc(&sql, ')');
    sqlite3_stmt *st = NULL;
    if (rv == EDGE_OK && (st = edge__repl_stmt(db, sql.data, sql.len)) == NULL) rv = EDGE_ESTORE;
    for (uint64_t i = 0; i < ncols && rv == EDGE_OK; i++) {
        rv = edge__repl_bind_value(st, (int)i + 1, &vals);
    }
    if (rv == EDGE_OK && sqlite3_step(st) != SQLITE_DONE) rv = EDGE_ESTORE;
    edge__repl_done(st);
    edge_buf_free(&sql);
    return rv;
}

/* "<verb> "table" WHERE pk1 IS ? AND ..." prepared (reused per connection) with the
 * primary key values of pkvals bound. The caller steps it and calls edge__repl_done. */
static int by_pk(sqlite3 *db, const char *verb, const char *table, const struct edge__pkinfo *pk,
                 struct edge__rd pkvals, sqlite3_stmt **out)
{
    char names[64][128];
    int n = column_names(db, table, names);
    if (n <= 0) return EDGE_ESTORE;
    struct edge_buf sql;
    edge_buf_init(&sql, 1 << 20);
    int rv = edge_buf_puts(&sql, verb);
    if (rv == EDGE_OK) rv = edge_store_quote_ident(&sql, table);
    if (rv == EDGE_OK) rv = edge_buf_puts(&sql, " WHERE ");
    for (int i = 0; i < pk->npk && rv == EDGE_OK; i++) {
        if (pk->pk[i] >= n) {
            rv = EDGE_ESTORE;
            break;
        }
        if (i > 0) rv = edge_buf_puts(&sql, " AND ");
        if (rv == EDGE_OK) rv = edge_store_quote_ident(&sql, names[pk->pk[i]]);
        if (rv == EDGE_OK) rv = edge_buf_puts(&sql, " IS ?");
    }
    sqlite3_stmt *st = NULL;
    if (rv == EDGE_OK && (st = edge__repl_stmt(db, sql.data, sql.len)) == NULL) rv = EDGE_ESTORE;
    for (int i = 0; i < pk->npk && rv == EDGE_OK; i++) {
        rv = edge__repl_bind_value(st, i + 1, &pkvals);
    }
    edge_buf_free(&sql);
    if (rv != EDGE_OK) {
        edge__repl_done(st);
        return rv;
    }
    *out = st;
    return EDGE_OK;
}

static int apply_delete(sqlite3 *db, const char *table, const struct edge__pkinfo *pk, struct edge__rd pkvals)
{
    sqlite3_stmt *st = NULL;
    int rv = by_pk(db, "DELETE FROM ", table, pk, pkvals, &st);
    if (rv == EDGE_OK && sqlite3_step(st) != SQLITE_DONE) rv = EDGE_ESTORE;
    edge__repl_done(st);
    return rv;
}

/* The current values of a row (encoded, table column order) into out. EDGE_ENOTFOUND if
 * the row is not there. */
static int read_row(sqlite3 *db, const char *table, const struct edge__pkinfo *pk, const void *pkbytes, size_t pklen,
                    struct edge_buf *out)
{
    sqlite3_stmt *st = NULL;
    int rv = by_pk(db, "SELECT * FROM ", table, pk, (struct edge__rd){pkbytes, pklen, 0}, &st);
    if (rv == EDGE_OK) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            for (int c = 0; c < sqlite3_column_count(st) && rv == EDGE_OK; c++) {
                rv = edge__repl_put_value(out, sqlite3_column_value(st, c));
            }
        } else {
            rv = rc == SQLITE_DONE ? EDGE_ENOTFOUND : EDGE_ESTORE;
        }
    }
    edge__repl_done(st);
    return rv;
}

/* Byte span of value i in a set of encoded values. */
static int value_at(struct edge__rd set, uint64_t i, const uint8_t **p, size_t *len)
{
    for (uint64_t k = 0; k < i; k++) {
        if (edge__repl_skip_value(&set) != EDGE_OK) return EDGE_ECORRUPT;
    }
    size_t start = set.off;
    if (edge__repl_skip_value(&set) != EDGE_OK) return EDGE_ECORRUPT;
    *p = set.p + start;
    *len = set.off - start;
    return EDGE_OK;
}

/* Apply one row image (values + column stamps) by the merge rule of rowmeta.c. */
static int merge_row(sqlite3 *db, const char *table, const struct edge__pkinfo *pk, const void *pkb, size_t pklen,
                     struct edge__rd vals, const struct edge__stamp *in, const struct edge__stamp *op,
                     const struct edge_vclock *deps, struct edge_repl_apply_stats *stats, bool *out_applied)
{
    struct edge__rowmeta m;
    struct edge_buf merged, cur;
    edge_buf_init(&merged, (size_t)1 << 30);
    edge_buf_init(&cur, (size_t)1 << 30);
    int rv = edge__meta_get(db, table, pkb, pklen, pk->ncols, &m);
    bool live = m.found && !m.deleted;
    /* Concurrent: the writer had not seen the row's last deciding write. */
    if (rv == EDGE_OK && m.found && strcmp(m.exist.origin, op->origin) != 0 && m.exist.origin[0] != '\0' &&
        edge_vclock_get(deps, m.exist.origin) < m.exist.seq) {
        stats->conflicts++;
        bool op_wins = edge__stamp_cmp(op, &m.exist) > 0;
        const struct edge__stamp *w = op_wins ? op : &m.exist, *l = op_wins ? &m.exist : op;
        record_conflict(db, table, pkb, pklen, w->origin, w->seq, w->hlc, l->origin, l->seq, l->hlc,
                        op_wins ? m.deleted : false, NULL, 0);
    }
    /* >= : operations of one entry share its stamp and apply in order (REPLACE is a
     * delete then an insert of the same key in one transaction). */
    bool exists_after = !m.found || edge__stamp_cmp(op, &m.exist) >= 0 || live;
    /* Where the losing columns' values come from: the live row, or the tombstone. In
     * the common case (nothing concurrent) every column is taken from the entry and the
     * current row need not be read at all. */
    bool all_take = true;
    for (int c = 0; rv == EDGE_OK && c < pk->ncols && all_take; c++) {
        all_take = edge__stamp_cmp(&in[c], &m.cols[c]) >= 0;
    }
    struct edge__rd base = {NULL, 0, 0};
    if (rv == EDGE_OK && live && !all_take) {
        int r2 = read_row(db, table, pk, pkb, pklen, &cur);
        if (r2 == EDGE_OK) {
            base = (struct edge__rd){(const uint8_t *)cur.data, cur.len, 0};
        } else if (r2 != EDGE_ENOTFOUND) {
            rv = r2;
        }
    } else if (rv == EDGE_OK && m.image != NULL && !all_take) {
        base = (struct edge__rd){m.image, m.image_len, 0};
    }
    bool changed = false;
    for (int c = 0; rv == EDGE_OK && c < pk->ncols; c++) {
        int cmp = edge__stamp_cmp(&in[c], &m.cols[c]);
        bool take = base.p == NULL || cmp >= 0;
        const uint8_t *vp;
        size_t vl;
        rv = take ? value_at(vals, (uint64_t)c, &vp, &vl) : value_at(base, (uint64_t)c, &vp, &vl);
        if (rv == EDGE_OK) rv = edge_buf_append(&merged, vp, vl);
        if (take) {
            if (cmp > 0) m.cols[c] = in[c];
            changed = true;
        }
    }
    if (rv == EDGE_OK) {
        bool exist_changed = !m.found || edge__stamp_cmp(op, &m.exist) >= 0;
        if (exist_changed) m.exist = *op;
        if (exists_after) {
            if (changed || !live) {
                rv = apply_upsert(db, table, (uint64_t)pk->ncols,
                                  (struct edge__rd){(const uint8_t *)merged.data, merged.len, 0});
            }
            m.deleted = false;
            edge_free(m.image);
            m.image = NULL;
            m.image_len = 0;
        } else {
            /* Still deleted: the column registers merge into the tombstone's image. */
            edge_free(m.image);
            m.image_len = merged.len;
            m.image = (uint8_t *)edge_buf_steal(&merged, NULL);
        }
        m.found = true;
        if (rv == EDGE_OK) rv = edge__meta_put(db, table, pkb, pklen, &m);
        *out_applied = exists_after && (changed || !live);
    }
    edge__meta_free(&m);
    edge_buf_free(&merged);
    edge_buf_free(&cur);
    return rv;
}

static int merge_delete(sqlite3 *db, const char *table, const struct edge__pkinfo *pk, const void *pkb, size_t pklen,
                        struct edge__rd pkvals, const struct edge__stamp *op, const struct edge_vclock *deps,
                        struct edge_repl_apply_stats *stats, bool *out_applied)
{
    struct edge__rowmeta m;
    int rv = edge__meta_get(db, table, pkb, pklen, pk->ncols, &m);
    *out_applied = false;
    if (rv == EDGE_OK && m.found && strcmp(m.exist.origin, op->origin) != 0 && m.exist.origin[0] != '\0' &&
        edge_vclock_get(deps, m.exist.origin) < m.exist.seq) {
        stats->conflicts++;
        bool op_wins = edge__stamp_cmp(op, &m.exist) > 0;
        const struct edge__stamp *w = op_wins ? op : &m.exist, *l = op_wins ? &m.exist : op;
        record_conflict(db, table, pkb, pklen, w->origin, w->seq, w->hlc, l->origin, l->seq, l->hlc,
                        op_wins ? m.deleted : true, NULL, 0);
    }
    if (rv == EDGE_OK && (!m.found || edge__stamp_cmp(op, &m.exist) >= 0)) {
        if (!m.found || !m.deleted) {
            struct edge_buf cur;
            edge_buf_init(&cur, (size_t)1 << 30);
            int r2 = read_row(db, table, pk, pkb, pklen, &cur);
            if (r2 == EDGE_OK) {
                edge_free(m.image);
                m.image_len = cur.len;
                m.image = (uint8_t *)edge_buf_steal(&cur, NULL);
                rv = apply_delete(db, table, pk, pkvals);
                *out_applied = true;
            } else if (r2 != EDGE_ENOTFOUND) {
                rv = r2;
            }
            edge_buf_free(&cur);
        }
        m.found = true;
        m.deleted = true;
        m.exist = *op;
        if (rv == EDGE_OK) rv = edge__meta_put(db, table, pkb, pklen, &m);
    }
    edge__meta_free(&m);
    return rv;
}

int edge_repl_apply_entry(sqlite3 *db, const char *origin, uint64_t seq, uint64_t hlc, int consistency,
                          const struct edge_vclock *deps, const uint8_t *payload, size_t payload_len,
                          struct edge_repl_apply_stats *stats, char *errmsg, size_t errmsg_len)
{
    struct edge_vclock vv;
    edge_vclock_init(&vv);
    int rv = edge_repl_vv_load(db, &vv);
    if (rv != EDGE_OK) {
        snprintf(errmsg, errmsg_len, "cannot read the version vector");
        goto out;
    }
    uint64_t have = edge_vclock_get(&vv, origin);
    if (seq <= have) {
        stats->duplicates++;
        rv = EDGE_OK;
        goto out;
    }
    if (seq != have + 1) {
        stats->deferred++;
        rv = EDGE_EAGAIN;
        goto out;
    }
    for (size_t i = 0; i < deps->n_entries; i++) {
        const char *r = deps->entries[i].region;
        if (strcmp(r, origin) != 0 && edge_vclock_get(&vv, r) < deps->entries[i].n) {
            stats->deferred++;
            rv = EDGE_EAGAIN;
            goto out;
        }
    }
    struct edge__rd rd = {payload, payload_len, 0};
    uint8_t version;
    uint64_t n_ops;
    if (edge__repl_get_u8(&rd, &version) != EDGE_OK || version != EDGE_REPL_PAYLOAD_VERSION ||
        edge__repl_get_varint(&rd, &n_ops) != EDGE_OK) {
        snprintf(errmsg, errmsg_len, "entry %s:%llu: bad payload header", origin, (unsigned long long)seq);
        rv = EDGE_ECORRUPT;
        goto out;
    }
    struct edge_buf pkb;
    edge_buf_init(&pkb, 1 << 20);
    for (uint64_t k = 0; k < n_ops && rv == EDGE_OK; k++) {
        const char *tname;
        size_t tlen;
        uint8_t kind;
        if (edge__repl_get_str(&rd, &tname, &tlen) != EDGE_OK || edge__repl_get_u8(&rd, &kind) != EDGE_OK ||
            tlen >= 256) {
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
            char *text = edge_strndup(sql, sl);
            char *err = NULL;
            if (text != NULL && sqlite3_exec(db, text, NULL, NULL, &err) != SQLITE_OK) {
                /* A schema change that cannot run here (already applied by a concurrent
                 * one) must not wedge the link: log it and go on. */
                EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_REPL, "apply %s:%llu: DDL failed: %s", origin,
                         (unsigned long long)seq, err ? err : "?");
            }
            sqlite3_free(err);
            edge_free(text);
            continue;
        }
        struct edge__pkinfo pk;
        if (edge__repl_pk_info(db, table, &pk) != EDGE_OK || pk.npk == 0) {
            snprintf(errmsg, errmsg_len, "entry %s:%llu: table %s is missing or has no primary key here", origin,
                     (unsigned long long)seq, table);
            rv = EDGE_ESTORE;
            break;
        }
        uint64_t n;
        if (edge__repl_get_varint(&rd, &n) != EDGE_OK || n > 65535) {
            rv = EDGE_ECORRUPT;
            break;
        }
        struct edge__rd vals = rd;
        for (uint64_t i = 0; i < n; i++) {
            if (edge__repl_skip_value(&rd) != EDGE_OK) {
                rv = EDGE_ECORRUPT;
                break;
            }
        }
        if (rv != EDGE_OK) break;
        edge_buf_reset(&pkb);
        struct edge__stamp opst;
        snprintf(opst.origin, sizeof(opst.origin), "%s", origin);
        opst.seq = seq;
        opst.hlc = hlc;
        bool applied = false;
        if (kind == EDGE_REPL_OP_ROW) {
            if (n != (uint64_t)pk.ncols) {
                snprintf(errmsg, errmsg_len, "entry %s:%llu: table %s has %d columns here, %llu in the entry",
                         origin, (unsigned long long)seq, table, pk.ncols, (unsigned long long)n);
                rv = EDGE_ESTORE;
                break;
            }
            struct edge__stamp *in = edge_calloc((size_t)pk.ncols, sizeof(*in));
            rv = in == NULL ? EDGE_ENOMEM : edge__stamps_decode(&rd, in, pk.ncols);
            if (rv == EDGE_OK) rv = edge__repl_pk_bytes(vals, &pk, &pkb);
            if (rv == EDGE_OK) {
                rv = merge_row(db, table, &pk, pkb.data ? pkb.data : "", pkb.len, vals, in, &opst, deps, stats,
                               &applied);
            }
            edge_free(in);
        } else if (kind == EDGE_REPL_OP_DELETE) {
            if (n != (uint64_t)pk.npk) {
                rv = EDGE_ECORRUPT;
                break;
            }
            rv = edge_buf_append(&pkb, vals.p + vals.off, rd.off - vals.off);
            if (rv == EDGE_OK) {
                rv = merge_delete(db, table, &pk, pkb.data ? pkb.data : "", pkb.len, vals, &opst, deps, stats,
                                  &applied);
            }
        } else {
            rv = EDGE_ECORRUPT;
        }
        if (rv != EDGE_OK) {
            if (rv != EDGE_ECORRUPT && errmsg[0] == '\0') {
                snprintf(errmsg, errmsg_len, "entry %s:%llu: applying to %s failed: %s", origin,
                         (unsigned long long)seq, table, sqlite3_errmsg(db));
            }
            break;
        }
        if (applied) stats->rows++;
    }
    edge_buf_free(&pkb);
    if (rv == EDGE_ECORRUPT && errmsg[0] == '\0') {
        snprintf(errmsg, errmsg_len, "entry %s:%llu: malformed payload", origin, (unsigned long long)seq);
    }
    if (rv != EDGE_OK) goto out;
    /* Keep the entry for relaying to regions that have not seen it yet. */
    rv = edge__repl_log_put(db, origin, seq, hlc, consistency, deps, payload, payload_len);
    if (rv != EDGE_OK) {
        snprintf(errmsg, errmsg_len, "cannot append entry %s:%llu to the log", origin, (unsigned long long)seq);
        goto out;
    }
    stats->applied++;
    if (hlc > stats->max_hlc) stats->max_hlc = hlc;
out:
    edge_vclock_close(&vv);
    return rv;
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
        } else {
            if (edge__repl_get_varint(&rd, &n) != EDGE_OK || n > 65535) return EDGE_ECORRUPT;
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
        }
        char table[256];
        snprintf(table, sizeof(table), "%.*s", (int)(tl < 255 ? tl : 255), t);
        if (cb) cb(ud, table, kind, (int)n);
    }
    return rd.off == rd.len ? EDGE_OK : EDGE_ECORRUPT;
}
