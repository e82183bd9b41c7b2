/* SPDX-License-Identifier: MIT */
/* Change capture and the change log (see repl.h for the design; the value encoding is
 * capture_values.c, the old row image capture_old.c).
 *
 * Payload format (version 3), all integers unsigned LEB128 unless noted:
 *   u8 version (=3), varint n_ops, then per op:
 *     str table, u8 kind (1 row, 2 delete, 3 ddl),
 *     row:    varint n, n column names (str), n values, n stamps (str origin, varint seq,
 *             varint hlc), in the origin's column order
 *     delete: varint npk, npk column names, npk values (primary key order)
 *     ddl:    str table (empty), str sql
 *     old:    like delete, every column of the row before the next op (repl_int.h)
 *   Columns are named so that a replica matches them by name (apply.c).
 *   value: u8 type (0 null, 1 integer, 2 float, 3 text, 4 blob) + data
 *     integer: zigzag varint; float: 8 bytes little-endian IEEE 754; text/blob: varint len + bytes */
#include "repl/repl_int.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/alloc.h"
#include "core/log.h"

/* ---------------------------------------------------------------------------------- */
/* Table primary keys                                                                 */
/* ---------------------------------------------------------------------------------- */

static void pk_col(void *ud, int cid, const char *name, int pk)
{
    (void)name;
    struct edge__pkinfo *out = ud;
    if (pk > 0 && pk <= EDGE_REPL_MAX_PK && cid < 65535) {
        out->pk[pk - 1] = cid;
        if (pk > out->npk) out->npk = pk;
    }
}

int edge__repl_pk_info(sqlite3 *db, const char *table, struct edge__pkinfo *out)
{
    memset(out, 0, sizeof(*out));
    int col = edge_store_table_columns(db, table, pk_col, out);
    if (col < 0) return EDGE_ESTORE;
    out->ncols = col;
    return col > 0 ? EDGE_OK : EDGE_ENOTFOUND;
}

/* ---------------------------------------------------------------------------------- */
/* Capture                                                                            */
/* ---------------------------------------------------------------------------------- */

#define MAX_SAVEPOINTS 32

struct edge_capture {
    sqlite3 *db;
    struct {
        char name[64];
        size_t mark;
    } sp[MAX_SAVEPOINTS];  /* open user savepoints, outermost first */
    int n_sp;
    bool sp_opened_txn;    /* sp[0] began the transaction (SAVEPOINT in autocommit) */
    struct edge_buf raw; /* recorded ops, see record() */
    size_t n_ops;
    bool suspended;
    bool failed;         /* an allocation failed while recording: the transaction must not commit */
    struct edge__ids *ids; /* id striping, NULL when off */
    const struct edge_conf_crdt *crdt; /* replication.crdt_columns, NULL: none */
    char nopk[128];
};

/* A value the preupdate hook reports for a column the stored record does not have (a
 * row written before ALTER TABLE ADD COLUMN): SQLite 3.40 returns its shared NULL
 * value instead of the column's default. Recorded as RAW_UNKNOWN so the tombstone of
 * such a row keeps "unknown" (the default) rather than a NULL no other region has. */
#define RAW_UNKNOWN EDGE__RAW_UNKNOWN
static const sqlite3_value *null_sentinel;

static int raw_skip(struct edge__rd *r)
{
    if (r->off < r->len && r->p[r->off] == RAW_UNKNOWN) {
        r->off++;
        return EDGE_OK;
    }
    return edge__repl_skip_value(r);
}

int edge__repl_raw_skip(struct edge__rd *r) { return raw_skip(r); }

/* Raw record: str table, u8 sqlite op, varint ncols, [old values][new values]. */
static void preupdate(void *ud, sqlite3 *db, int op, const char *zdb, const char *table, sqlite3_int64 k1,
                      sqlite3_int64 k2)
{
    (void)k1;
    (void)k2;
    struct edge_capture *c = ud;
    /* edgelite's own tables stay local, except the sessions table: sessions replicate
     * through the log like user rows (src/sessions/sessions.h). */
    if (c->suspended || strcmp(zdb, "main") != 0 ||
        (strncmp(table, "_edge_", 6) == 0 && strcmp(table, "_edge_sessions") != 0) ||
        strncmp(table, "sqlite_", 7) == 0) {
        return;
    }
    int n = sqlite3_preupdate_count(db);
    size_t mark = c->raw.len;
    int rv = edge__repl_put_str(&c->raw, table, strlen(table));
    if (rv == EDGE_OK) rv = edge_buf_putc(&c->raw, (char)op);
    if (rv == EDGE_OK) rv = edge__uvarint_put(&c->raw, (uint64_t)n);
    for (int pass = 0; pass < 2 && rv == EDGE_OK; pass++) {
        bool old = pass == 0;
        if (old && op == SQLITE_INSERT) continue;
        if (!old && op == SQLITE_DELETE) continue;
        for (int i = 0; i < n && rv == EDGE_OK; i++) {
            sqlite3_value *v = NULL;
            int src = old ? sqlite3_preupdate_old(db, i, &v) : sqlite3_preupdate_new(db, i, &v);
            if (src == SQLITE_OK && old && v != NULL && v == __atomic_load_n(&null_sentinel, __ATOMIC_ACQUIRE)) {
                rv = edge_buf_putc(&c->raw, RAW_UNKNOWN);
            } else if (src != SQLITE_OK || v == NULL) {
                rv = edge_buf_putc(&c->raw, 0);
            } else {
                rv = edge__repl_put_value(&c->raw, v);
            }
        }
    }
    if (rv != EDGE_OK) {
        c->raw.len = mark;
        c->failed = true;
        return;
    }
    c->n_ops++;
}

int edge_capture_create(sqlite3 *db, struct edge_capture **out)
{
    struct edge_capture *c = edge_calloc(1, sizeof(*c));
    if (c == NULL) return EDGE_ENOMEM;
    c->db = db;
    if (__atomic_load_n(&null_sentinel, __ATOMIC_ACQUIRE) == NULL) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db, "SELECT 1", -1, &st, NULL) == SQLITE_OK) {
            /* not stepped: out of range, SQLite hands out its static NULL value */
            __atomic_store_n(&null_sentinel, sqlite3_column_value(st, 0), __ATOMIC_RELEASE);
        }
        sqlite3_finalize(st);
    }
    edge_buf_init(&c->raw, (size_t)1 << 30);
    sqlite3_preupdate_hook(db, preupdate, c);
    *out = c;
    return EDGE_OK;
}

void edge_capture_destroy(struct edge_capture *c)
{
    if (c == NULL) return;
    sqlite3_preupdate_hook(c->db, NULL, NULL);
    edge__ids_detach(c->ids);
    edge_buf_free(&c->raw);
    edge_free(c);
}

int edge_capture_ids_enable(struct edge_capture *c, int index, int stride)
{
    if (c->ids != NULL) return EDGE_OK;
    return edge__ids_attach(c->db, index, stride, &c->ids);
}

int edge_capture_ids_before(struct edge_capture *c, const char *sql, size_t len)
{
    return c->ids ? edge__ids_before(c->ids, sql, len) : EDGE_OK;
}

void edge_capture_ids_after(struct edge_capture *c, struct edge_ids_result *out)
{
    if (c->ids != NULL) {
        edge__ids_after(c->ids, out);
    } else {
        memset(out, 0, sizeof(*out));
    }
}

void edge_capture_reset(struct edge_capture *c)
{
    edge_buf_reset(&c->raw);
    c->n_ops = 0;
    c->failed = false;
    c->n_sp = 0;
    c->sp_opened_txn = false;
}

static int sp_find(const struct edge_capture *c, const char *name)
{
    for (int i = c->n_sp - 1; i >= 0; i--) {
        if (strcasecmp(c->sp[i].name, name) == 0) return i;
    }
    return -1;
}

void edge_capture_savepoint(struct edge_capture *c, const char *name, bool opened_txn)
{
    if (c->n_sp == 0) c->sp_opened_txn = opened_txn;
    if (c->n_sp < MAX_SAVEPOINTS) {
        snprintf(c->sp[c->n_sp].name, sizeof(c->sp[0].name), "%s", name);
        c->sp[c->n_sp].mark = c->raw.len;
        c->n_sp++;
    } else {
        c->failed = true; /* cannot track it: refuse to log a wrong entry */
    }
}

void edge_capture_rollback_to(struct edge_capture *c, const char *name)
{
    int i = sp_find(c, name);
    if (i >= 0) {
        edge_capture_rewind(c, c->sp[i].mark);
        c->n_sp = i + 1; /* ROLLBACK TO keeps the savepoint itself */
    }
}

bool edge_capture_release_ends_txn(const struct edge_capture *c, const char *name)
{
    return c->sp_opened_txn && sp_find(c, name) == 0;
}

void edge_capture_release(struct edge_capture *c, const char *name)
{
    int i = sp_find(c, name);
    if (i >= 0) c->n_sp = i;
}

size_t edge_capture_mark(const struct edge_capture *c) { return c->raw.len; }

void edge_capture_rewind(struct edge_capture *c, size_t mark)
{
    if (mark <= c->raw.len) {
        c->raw.len = mark;
        if (c->raw.data) c->raw.data[mark] = '\0';
    }
}

void edge_capture_suspend(struct edge_capture *c, bool suspended) { c->suspended = suspended; }
bool edge_capture_has_changes(const struct edge_capture *c) { return c->raw.len > 0; }

int edge_capture_ddl(struct edge_capture *c, const char *sql, size_t len)
{
    if (c->suspended) return EDGE_OK;
    /* A rename is remembered here as on every region that applies it (renames.c). */
    int nrv = edge__renames_note(c->db, sql, len);
    if (nrv != EDGE_OK) return nrv;
    size_t mark = c->raw.len;
    int rv = edge__repl_put_str(&c->raw, "", 0);
    if (rv == EDGE_OK) rv = edge_buf_putc(&c->raw, (char)EDGE__OP_DDL_RAW);
    if (rv == EDGE_OK) rv = edge__repl_put_str(&c->raw, sql, len);
    if (rv != EDGE_OK) {
        c->raw.len = mark;
        return rv;
    }
    c->n_ops++;
    return EDGE_OK;
}

int edge_capture_crdt(struct edge_capture *c, const char *name, const char *type, const void *delta, size_t len)
{
    if (c->suspended) return EDGE_OK;
    size_t mark = c->raw.len;
    int rv = edge__repl_put_str(&c->raw, name, strlen(name));
    if (rv == EDGE_OK) rv = edge_buf_putc(&c->raw, (char)EDGE__OP_CRDT_RAW);
    if (rv == EDGE_OK) rv = edge__repl_put_str(&c->raw, type, strlen(type));
    if (rv == EDGE_OK) rv = edge__repl_put_str(&c->raw, delta, len);
    if (rv != EDGE_OK) {
        c->raw.len = mark;
        return rv;
    }
    c->n_ops++;
    return EDGE_OK;
}

/* Walk raw records, calling fn for each. */
struct raw_op {
    const char *table;
    size_t table_len;
    int op;
    uint64_t ncols;
    struct edge__rd vals; /* positioned at the first value */
    const char *sql;      /* ddl; for a CRDT record its type name */
    size_t sql_len;
    const char *delta;    /* CRDT record */
    size_t delta_len;
};

static int raw_next(struct edge__rd *r, struct raw_op *o)
{
    uint8_t op;
    if (edge__repl_get_str(r, &o->table, &o->table_len) != EDGE_OK) return EDGE_ECORRUPT;
    if (edge__repl_get_u8(r, &op) != EDGE_OK) return EDGE_ECORRUPT;
    o->op = op;
    if (op == EDGE__OP_DDL_RAW) {
        return edge__repl_get_str(r, &o->sql, &o->sql_len);
    }
    if (op == EDGE__OP_CRDT_RAW) {
        if (edge__repl_get_str(r, &o->sql, &o->sql_len) != EDGE_OK) return EDGE_ECORRUPT;
        return edge__repl_get_str(r, &o->delta, &o->delta_len);
    }
    if (edge__repl_get_varint(r, &o->ncols) != EDGE_OK || o->ncols > 65535) return EDGE_ECORRUPT;
    o->vals = *r;
    int sets = op == SQLITE_UPDATE ? 2 : 1;
    for (int s = 0; s < sets; s++) {
        for (uint64_t i = 0; i < o->ncols; i++) {
            if (raw_skip(r) != EDGE_OK) return EDGE_ECORRUPT;
        }
    }
    return EDGE_OK;
}

/* Copy value i of the value set starting at rd into out; also returns its bytes. */
static int copy_value(struct edge__rd set, uint64_t idx, struct edge_buf *out)
{
    for (uint64_t i = 0; i < idx; i++) {
        if (raw_skip(&set) != EDGE_OK) return EDGE_ECORRUPT;
    }
    size_t start = set.off;
    if (raw_skip(&set) != EDGE_OK) return EDGE_ECORRUPT;
    return edge_buf_append(out, set.p + start, set.off - start);
}

static int copy_set(struct edge__rd set, uint64_t n, struct edge_buf *out, struct edge__rd *after)
{
    size_t start = set.off;
    for (uint64_t i = 0; i < n; i++) {
        if (raw_skip(&set) != EDGE_OK) return EDGE_ECORRUPT;
    }
    if (after) *after = set;
    return edge_buf_append(out, set.p + start, set.off - start);
}

void edge_capture_set_crdt(struct edge_capture *c, const struct edge_conf_crdt *cc) { c->crdt = cc; }

int edge_capture_check(struct edge_capture *c, size_t mark, bool ddl, char *errmsg, size_t errmsg_len)
{
    if (c->crdt == NULL || c->crdt->n_cols == 0) return EDGE_OK;
    if (ddl) {
        int rv = edge__crdt_cols_check(c->db, c->crdt, errmsg, errmsg_len);
        if (rv != EDGE_OK) return rv;
    }
    struct edge__rd r = {(const uint8_t *)c->raw.data, c->raw.len, mark <= c->raw.len ? mark : c->raw.len};
    struct edge_buf v;
    edge_buf_init(&v, (size_t)1 << 30);
    struct edge__tinfo ti; /* of the table last seen: a statement writes many rows of one table */
    memset(&ti, 0, sizeof(ti));
    bool have_ti = false;
    int rv = EDGE_OK;
    while (rv == EDGE_OK && r.off < r.len) {
        struct raw_op o;
        if (raw_next(&r, &o) != EDGE_OK) {
            rv = EDGE_ECORRUPT;
            break;
        }
        if (o.op != SQLITE_INSERT && o.op != SQLITE_UPDATE) continue;
        char table[256];
        snprintf(table, sizeof(table), "%.*s", (int)(o.table_len < 255 ? o.table_len : 255), o.table);
        struct edge__rd newset = o.vals;
        if (o.op == SQLITE_UPDATE && copy_set(o.vals, o.ncols, &v, &newset) != EDGE_OK) {
            rv = EDGE_ECORRUPT;
            break;
        }
        for (size_t i = 0; i < c->crdt->n_cols && rv == EDGE_OK; i++) {
            const struct edge_conf_crdt_column *cc = &c->crdt->cols[i];
            if (strcasecmp(cc->table, table) != 0) continue;
            if (!have_ti || strcmp(ti.name, table) != 0) {
                edge__tinfo_free(&ti);
                have_ti = edge__tinfo_load(c->db, table, &ti) == EDGE_OK;
                if (!have_ti) {
                    rv = EDGE_ESTORE;
                    break;
                }
            }
            int k = edge__tinfo_col(&ti, cc->column, strlen(cc->column));
            int64_t iv;
            edge_buf_reset(&v);
            if (k >= 0 && (uint64_t)k < o.ncols && copy_value(newset, (uint64_t)k, &v) == EDGE_OK) {
                bool bad = cc->kind == EDGE_CONF_CRDT_COUNTER
                               ? edge__crdt_value_int((const uint8_t *)v.data, v.len, &iv) != EDGE_OK
                               : edge__crdt_set_check((const uint8_t *)v.data, v.len) != EDGE_OK;
                if (bad) {
                    snprintf(errmsg, errmsg_len, "%s.%s is a%s column (replication.crdt_columns): it holds %s", table,
                             cc->column, cc->kind == EDGE_CONF_CRDT_COUNTER ? " pn-counter" : "n or-set",
                             cc->kind == EDGE_CONF_CRDT_COUNTER ? "integers only" : "a JSON array");
                    rv = EDGE_EINVAL;
                }
            }
        }
    }
    edge__tinfo_free(&ti);
    edge_buf_free(&v);
    return rv;
}

const char *edge_capture_table_without_pk(struct edge_capture *c)
{
    struct edge__rd r = {(const uint8_t *)c->raw.data, c->raw.len, 0};
    while (r.off < r.len) {
        struct raw_op o;
        if (raw_next(&r, &o) != EDGE_OK) return NULL;
        if (o.op == EDGE__OP_DDL_RAW || o.op == EDGE__OP_CRDT_RAW) continue;
        char name[128];
        snprintf(name, sizeof(name), "%.*s", (int)o.table_len, o.table);
        struct edge__pkinfo pk;
        if (edge__repl_pk_info(c->db, name, &pk) == EDGE_OK && pk.npk == 0) {
            snprintf(c->nopk, sizeof(c->nopk), "%s", name);
            return c->nopk;
        }
    }
    return NULL;
}

void edge_capture_tables(const struct edge_capture *c, void (*cb)(void *ud, const char *table, size_t len),
                         void *ud)
{
    struct edge__rd r = {(const uint8_t *)c->raw.data, c->raw.len, 0};
    const char *last = NULL;
    size_t last_len = 0;
    while (r.off < r.len) {
        struct raw_op o;
        if (raw_next(&r, &o) != EDGE_OK || o.op == EDGE__OP_DDL_RAW) {
            cb(ud, NULL, 0);
            return;
        }
        /* a run of ops on one table is reported once */
        if (last != NULL && last_len == o.table_len && memcmp(last, o.table, last_len) == 0) continue;
        last = o.table;
        last_len = o.table_len;
        cb(ud, o.table, o.table_len);
    }
}

/* Encode the primary key of a value set (ncols values in column order). */
int edge__repl_pk_bytes(struct edge__rd set, const struct edge__pkinfo *pk, struct edge_buf *out)
{
    for (int i = 0; i < pk->npk; i++) {
        int rv = copy_value(set, (uint64_t)pk->pk[i], out);
        if (rv != EDGE_OK) return rv;
    }
    return EDGE_OK;
}

int edge_repl_vv_load(sqlite3 *db, struct edge_vclock *vv)
{
    static const char sql[] = "SELECT origin, seq FROM _edge_vv";
    sqlite3_stmt *st = edge__repl_stmt(db, sql, sizeof(sql) - 1);
    if (st == NULL) return EDGE_ESTORE;
    int rv = EDGE_OK;
    while (rv == EDGE_OK && sqlite3_step(st) == SQLITE_ROW) {
        rv = edge_vclock_set(vv, (const char *)sqlite3_column_text(st, 0), (uint64_t)sqlite3_column_int64(st, 1));
    }
    edge__repl_done(st);
    return rv;
}

int edge__repl_log_put(sqlite3 *db, const char *origin, uint64_t seq, uint64_t hlc, int consistency,
                       const struct edge_vclock *deps, const void *payload, size_t len)
{
    struct edge_buf d;
    edge_buf_init(&d, 1 << 20);
    int rv = edge_vclock_encode(deps, &d);
    if (rv != EDGE_OK) {
        edge_buf_free(&d);
        return rv;
    }
    static const char q1[] = "INSERT INTO _edge_log(origin, seq, hlc, consistency, deps, payload) VALUES (?1,?2,?3,?4,?5,?6)";
    sqlite3_stmt *st = edge__repl_stmt(db, q1, sizeof(q1) - 1);
    int rc = st ? SQLITE_OK : SQLITE_ERROR;
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, origin, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)seq);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)hlc);
        sqlite3_bind_int(st, 4, consistency);
        sqlite3_bind_blob64(st, 5, d.data ? d.data : "", d.len, SQLITE_STATIC);
        sqlite3_bind_blob64(st, 6, payload ? payload : "", len, SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    edge__repl_done(st);
    edge_buf_free(&d);
    if (rc != SQLITE_DONE) return EDGE_ESTORE;
    static const char q2[] = "INSERT INTO _edge_vv(origin, seq) VALUES (?1, ?2) "
                             "ON CONFLICT(origin) DO UPDATE SET seq = excluded.seq";
    st = edge__repl_stmt(db, q2, sizeof(q2) - 1);
    rc = st ? SQLITE_OK : SQLITE_ERROR;
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, origin, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)seq);
        rc = sqlite3_step(st);
    }
    edge__repl_done(st);
    return rc == SQLITE_DONE ? EDGE_OK : EDGE_ESTORE;
}

/* m's kept values from a set of m->ncols encoded values. */
static int set_image_from(struct edge__rowmeta *m, struct edge__rd set)
{
    const uint8_t **v = edge_calloc((size_t)m->ncols + 1, sizeof(*v));
    size_t *l = edge_calloc((size_t)m->ncols + 1, sizeof(*l));
    int rv = v && l ? EDGE_OK : EDGE_ENOMEM;
    for (int i = 0; i < m->ncols && rv == EDGE_OK; i++) {
        size_t start = set.off;
        bool unknown = start < set.len && set.p[start] == RAW_UNKNOWN;
        rv = raw_skip(&set);
        v[i] = unknown ? NULL : set.p + start;
        l[i] = unknown ? 0 : set.off - start;
    }
    if (rv == EDGE_OK) rv = edge__meta_set_image(m, v, l);
    edge_free(v);
    edge_free(l);
    return rv;
}

/* What a row write did to its CRDT columns (crdt_cols.c), appended as the extension of
 * an EDGE_REPL_OP_ROWX: for a pn-counter the new value minus the old one for an UPDATE
 * in place (has_old), the new value otherwise; for an or-set the delta of its set. */
static int crdt_exts(struct edge_buf *body, sqlite3 *db, const char *region, const struct edge__tinfo *ti,
                     const uint8_t *kinds, const void *pk, size_t pklen, struct edge__rd oldset, struct edge__rd newset,
                     bool has_old, char *errmsg, size_t errmsg_len)
{
    struct edge_buf a, b, ext;
    edge_buf_init(&a, (size_t)1 << 30);
    edge_buf_init(&b, (size_t)1 << 30);
    edge_buf_init(&ext, (size_t)1 << 30);
    uint64_t n = 0;
    int rv = EDGE_OK;
    for (int k = 0; k < ti->pk.ncols && rv == EDGE_OK; k++) {
        if (kinds[k] == 0) continue;
        int64_t nv = 0, ov = 0, d;
        edge_buf_reset(&a);
        edge_buf_reset(&b);
        rv = copy_value(newset, (uint64_t)k, &b);
        if (rv == EDGE_OK && has_old) rv = copy_value(oldset, (uint64_t)k, &a);
        if (rv != EDGE_OK) break;
        if (kinds[k] == EDGE_CONF_CRDT_ORSET) {
            if (has_old && a.len == b.len && memcmp(a.data, b.data, a.len) == 0) continue; /* unchanged */
            rv = edge__uvarint_put(&ext, (uint64_t)k);
            if (rv == EDGE_OK) rv = edge_buf_putc(&ext, EDGE_CONF_CRDT_ORSET);
            if (rv == EDGE_OK) {
                rv = edge__crdt_set_write(db, region, ti, k, pk, pklen, has_old ? (const uint8_t *)a.data : NULL,
                                          a.len, (const uint8_t *)b.data, b.len, &ext);
            }
            if (rv == EDGE_EINVAL) {
                snprintf(errmsg, errmsg_len,
                         "%s.%s is an or-set column (replication.crdt_columns): it holds a JSON array", ti->name,
                         ti->cols[k]);
            }
            n++;
            continue;
        }
        rv = edge__crdt_value_int((const uint8_t *)b.data, b.len, &nv);
        if (rv == EDGE_OK && has_old) rv = edge__crdt_value_int((const uint8_t *)a.data, a.len, &ov);
        if (rv == EDGE_EINVAL) {
            snprintf(errmsg, errmsg_len, "%s.%s is a pn-counter column (replication.crdt_columns): it holds integers only",
                     ti->name, ti->cols[k]);
            break;
        }
        if (rv == EDGE_OK && __builtin_sub_overflow(nv, ov, &d)) {
            snprintf(errmsg, errmsg_len, "%s.%s: the change is beyond 64 bits", ti->name, ti->cols[k]);
            rv = EDGE_EOVERFLOW;
        }
        if (rv == EDGE_OK) rv = edge__uvarint_put(&ext, (uint64_t)k);
        if (rv == EDGE_OK) rv = edge_buf_putc(&ext, EDGE_CONF_CRDT_COUNTER);
        if (rv == EDGE_OK) rv = edge__uvarint_put(&ext, ((uint64_t)d << 1) ^ (uint64_t)(d >> 63));
        n++;
    }
    if (rv == EDGE_OK) rv = edge__uvarint_put(body, n);
    if (rv == EDGE_OK) rv = edge_buf_append(body, ext.data ? ext.data : "", ext.len);
    edge_buf_free(&a);
    edge_buf_free(&b);
    edge_buf_free(&ext);
    return rv;
}

/* Build the payload from the raw records and the row metadata updates. */
int edge_repl_commit_entry(struct edge_capture *c, const struct edge_repl_local *local, int consistency,
                           uint64_t *out_seq, char *errmsg, size_t errmsg_len)
{
    *out_seq = 0;
    if (c->failed) {
        snprintf(errmsg, errmsg_len, "change capture ran out of memory");
        return EDGE_ENOMEM;
    }
    if (c->raw.len == 0) {
        return EDGE_OK;
    }
    int rv = EDGE_OK;
    struct edge_vclock vv;
    edge_vclock_init(&vv);
    struct edge_buf payload, pkb, body;
    edge_buf_init(&payload, (size_t)1 << 30);
    edge_buf_init(&pkb, 1 << 20);
    edge_buf_init(&body, (size_t)1 << 30);
    bool suspended = c->suspended;
    c->suspended = true; /* our own metadata writes are not user changes */

    rv = edge_repl_vv_load(c->db, &vv);
    if (rv != EDGE_OK) {
        snprintf(errmsg, errmsg_len, "cannot read the version vector");
        goto out;
    }
    uint64_t seq = edge_vclock_get(&vv, local->region) + 1;
    pthread_mutex_lock((pthread_mutex_t *)local->mu);
    uint64_t hlc = edge_hlc_now(local->hlc);
    pthread_mutex_unlock((pthread_mutex_t *)local->mu);

    uint64_t n_ops = 0;
    struct edge__rd r = {(const uint8_t *)c->raw.data, c->raw.len, 0};
    uint8_t *kinds = NULL; /* EDGE_CONF_CRDT_* per column of the current table */
    int n_counters = 0; /* CRDT columns of the current table */
    bool checked = false, had_ddl = false;
    char table[256];
    struct edge__tinfo ti;
    memset(&ti, 0, sizeof(ti));
    struct edge__pkinfo pk = {0};
    table[0] = '\0';
    while (rv == EDGE_OK && r.off < r.len) {
        struct raw_op o;
        if (raw_next(&r, &o) != EDGE_OK) {
            rv = EDGE_ECORRUPT;
            break;
        }
        if (o.op == EDGE__OP_DDL_RAW) {
            had_ddl = true;
            rv = edge__repl_put_str(&body, "", 0);
            if (rv == EDGE_OK) rv = edge_buf_putc(&body, EDGE_REPL_OP_DDL);
            if (rv == EDGE_OK) rv = edge__repl_put_str(&body, o.sql, o.sql_len);
            n_ops++;
            continue;
        }
        if (o.op == EDGE__OP_CRDT_RAW) {
            rv = edge__repl_put_str(&body, o.table, o.table_len);
            if (rv == EDGE_OK) rv = edge_buf_putc(&body, EDGE_REPL_OP_CRDT);
            if (rv == EDGE_OK) rv = edge__repl_put_str(&body, o.sql, o.sql_len);
            if (rv == EDGE_OK) rv = edge__repl_put_str(&body, o.delta, o.delta_len);
            n_ops++;
            continue;
        }
        if (o.table_len >= sizeof(table)) {
            rv = EDGE_EINVAL;
            snprintf(errmsg, errmsg_len, "table name too long");
            break;
        }
        if (strlen(table) != o.table_len || memcmp(table, o.table, o.table_len) != 0) {
            memcpy(table, o.table, o.table_len);
            table[o.table_len] = '\0';
            edge__tinfo_free(&ti);
            if (edge__tinfo_load(c->db, table, &ti) != EDGE_OK) {
                rv = EDGE_ESTORE;
                snprintf(errmsg, errmsg_len, "cannot read the schema of table %s", table);
                break;
            }
            pk = ti.pk;
            edge_free(kinds);
            kinds = edge_calloc((size_t)ti.pk.ncols + 1, 1);
            if (kinds == NULL) {
                rv = EDGE_ENOMEM;
                break;
            }
            n_counters = 0;
            for (int k = 0; local->crdt != NULL && k < ti.pk.ncols; k++) {
                kinds[k] = (uint8_t)edge_conf_crdt_kind(local->crdt, table, ti.cols[k]);
                if (kinds[k] != 0) n_counters++; /* pn-counter or or-set */
            }
            if (!checked && local->crdt != NULL && local->crdt->n_cols > 0) {
                /* a table may have changed since the start: check once per entry */
                checked = true;
                rv = edge__crdt_cols_check(c->db, local->crdt, errmsg, errmsg_len);
                if (rv != EDGE_OK) break;
            }
        }
        if (pk.npk == 0) {
            rv = EDGE_EINVAL;
            snprintf(errmsg, errmsg_len,
                     "table %s has no PRIMARY KEY: edgelite replicates only tables with a primary key", table);
            break;
        }
        if ((uint64_t)pk.ncols != o.ncols) {
            rv = EDGE_ESTORE;
            snprintf(errmsg, errmsg_len, "table %s changed shape during the transaction", table);
            break;
        }
        struct edge__rd oldset = o.vals, newset = o.vals;
        if (o.op == SQLITE_UPDATE) {
            /* the new values follow the old ones */
            struct edge_buf skip;
            edge_buf_init(&skip, (size_t)1 << 30);
            rv = copy_set(o.vals, o.ncols, &skip, &newset);
            edge_buf_free(&skip);
            if (rv != EDGE_OK) break;
        }
        /* An UPDATE that moves the primary key is a delete of the old key plus a new row. */
        struct edge_buf oldpk;
        edge_buf_init(&oldpk, 1 << 20);
        edge_buf_reset(&pkb);
        if (o.op != SQLITE_INSERT) rv = edge__repl_pk_bytes(oldset, &pk, &oldpk);
        if (rv == EDGE_OK && o.op != SQLITE_DELETE) rv = edge__repl_pk_bytes(newset, &pk, &pkb);
        bool moved = o.op == SQLITE_UPDATE &&
                     (oldpk.len != pkb.len || memcmp(oldpk.data ? oldpk.data : "", pkb.data ? pkb.data : "", pkb.len) != 0);
        struct edge__stamp me;
        snprintf(me.origin, sizeof(me.origin), "%s", local->region);
        me.seq = seq;
        me.hlc = hlc;
        if (rv == EDGE_OK && o.op != SQLITE_INSERT) {
            /* before the delete (of the old key, when the key moved) or the update */
            rv = edge__repl_put_old(&body, &ti, table, o.table_len, oldset, o.ncols, &n_ops);
        }
        if (rv == EDGE_OK && (o.op == SQLITE_DELETE || moved)) {
            rv = edge__repl_put_str(&body, table, o.table_len);
            if (rv == EDGE_OK) rv = edge_buf_putc(&body, EDGE_REPL_OP_DELETE);
            if (rv == EDGE_OK) rv = edge__uvarint_put(&body, (uint64_t)pk.npk);
            for (int k = 0; k < pk.npk && rv == EDGE_OK; k++) {
                const char *cn = ti.cols[pk.pk[k]];
                rv = edge__repl_put_str(&body, cn, strlen(cn));
            }
            if (rv == EDGE_OK) rv = edge_buf_append(&body, oldpk.data ? oldpk.data : "", oldpk.len);
            struct edge__rowmeta m;
            memset(&m, 0, sizeof(m));
            if (rv == EDGE_OK) rv = edge__meta_get(c->db, &ti, oldpk.data ? oldpk.data : "", oldpk.len, &m);
            if (rv == EDGE_OK) {
                /* The tombstone keeps the row's values: its column registers live on. */
                rv = set_image_from(&m, oldset);
                m.found = true;
                m.deleted = true;
                m.hidden = EDGE__HIDDEN_NO;
                m.exist = me;
                if (rv == EDGE_OK) rv = edge__meta_put(c->db, &ti, oldpk.data ? oldpk.data : "", oldpk.len, &m);
            }
            edge__meta_free(&m);
            n_ops++;
        }
        if (rv == EDGE_OK && o.op != SQLITE_DELETE) {
            struct edge__rowmeta m;
            rv = edge__meta_get(c->db, &ti, pkb.data ? pkb.data : "", pkb.len, &m);
            /* Columns this write set get its stamp; the others keep theirs. */
            for (uint64_t k = 0; rv == EDGE_OK && k < o.ncols; k++) {
                bool changed = true;
                if (o.op == SQLITE_UPDATE && !moved) {
                    struct edge_buf a, b;
                    edge_buf_init(&a, (size_t)1 << 30);
                    edge_buf_init(&b, (size_t)1 << 30);
                    if (copy_value(oldset, k, &a) == EDGE_OK && copy_value(newset, k, &b) == EDGE_OK) {
                        changed = a.len != b.len || memcmp(a.data ? a.data : "", b.data ? b.data : "", a.len) != 0;
                    }
                    edge_buf_free(&a);
                    edge_buf_free(&b);
                }
                if (changed || !m.found || m.deleted || m.hidden != EDGE__HIDDEN_NO) m.cols[k] = me;
            }
            m.found = true;
            m.deleted = false;
            /* A row written here is in its table, whatever hid an earlier version. */
            m.hidden = EDGE__HIDDEN_NO;
            edge__meta_drop_image(&m);
            m.exist = me;
            if (rv == EDGE_OK) rv = edge__meta_put(c->db, &ti, pkb.data ? pkb.data : "", pkb.len, &m);
            if (rv == EDGE_OK) rv = edge__repl_put_str(&body, table, o.table_len);
            if (rv == EDGE_OK) rv = edge_buf_putc(&body, n_counters > 0 ? EDGE_REPL_OP_ROWX : EDGE_REPL_OP_ROW);
            if (rv == EDGE_OK) rv = edge__uvarint_put(&body, o.ncols);
            for (uint64_t k = 0; k < o.ncols && rv == EDGE_OK; k++) {
                rv = edge__repl_put_str(&body, ti.cols[k], strlen(ti.cols[k]));
            }
            if (rv == EDGE_OK) rv = copy_set(newset, o.ncols, &body, NULL);
            if (rv == EDGE_OK) rv = edge__stamps_encode(&body, m.cols, m.ncols);
            if (rv == EDGE_OK && n_counters > 0) {
                rv = crdt_exts(&body, c->db, local->region, &ti, kinds, pkb.data ? pkb.data : "", pkb.len, oldset,
                               newset, o.op == SQLITE_UPDATE && !moved, errmsg, errmsg_len);
            }
            edge__meta_free(&m);
            n_ops++;
        }
        edge_buf_free(&oldpk);
    }
    edge__tinfo_free(&ti);
    edge_free(kinds);
    if (rv == EDGE_OK && had_ddl) {
        /* the transaction may have created (or changed) a table with CRDT columns */
        rv = edge__crdt_cols_check(c->db, local->crdt, errmsg, errmsg_len);
    }
    if (rv != EDGE_OK) {
        if (errmsg[0] == '\0') snprintf(errmsg, errmsg_len, "cannot record the change: %s", edge_strerror(rv));
        goto out;
    }
    rv = edge_buf_putc(&payload, EDGE_REPL_PAYLOAD_VERSION);
    if (rv == EDGE_OK) rv = edge__uvarint_put(&payload, n_ops);
    if (rv == EDGE_OK) rv = edge_buf_append(&payload, body.data ? body.data : "", body.len);
    /* deps: what this region had seen when it wrote (its VV before this entry). */
    if (rv == EDGE_OK) rv = edge__repl_log_put(c->db, local->region, seq, hlc, consistency, &vv, payload.data, payload.len);
    if (rv != EDGE_OK) {
        snprintf(errmsg, errmsg_len, "cannot append to the change log");
        goto out;
    }
    rv = edge__repl_restore_local(c->db);
    if (rv != EDGE_OK) {
        snprintf(errmsg, errmsg_len, "cannot put hidden rows back: %s", sqlite3_errmsg(c->db));
        goto out;
    }
    *out_seq = seq;
    edge_capture_reset(c);
out:
    c->suspended = suspended;
    edge_vclock_close(&vv);
    edge_buf_free(&payload);
    edge_buf_free(&pkb);
    edge_buf_free(&body);
    return rv;
}

int edge_repl_schema_init(sqlite3 *db, char *errmsg, size_t errmsg_len)
{
    static const char ddl[] =
        "CREATE TABLE IF NOT EXISTS _edge_log(origin TEXT NOT NULL, seq INTEGER NOT NULL, hlc INTEGER NOT NULL,"
        " consistency INTEGER NOT NULL, deps BLOB NOT NULL, payload BLOB NOT NULL,"
        " PRIMARY KEY(origin, seq)) WITHOUT ROWID;"
        "CREATE TABLE IF NOT EXISTS _edge_vv(origin TEXT PRIMARY KEY, seq INTEGER NOT NULL);"
        "CREATE TABLE IF NOT EXISTS _edge_rows(tbl TEXT NOT NULL, pk BLOB NOT NULL, origin TEXT NOT NULL,"
        " seq INTEGER NOT NULL, hlc INTEGER NOT NULL, deleted INTEGER NOT NULL, cols BLOB, image BLOB,"
        " PRIMARY KEY(tbl, pk)) WITHOUT ROWID;"
        "CREATE TABLE IF NOT EXISTS _edge_conflicts(id INTEGER PRIMARY KEY, tbl TEXT NOT NULL, pk BLOB NOT NULL,"
        " winner_origin TEXT NOT NULL, winner_seq INTEGER NOT NULL, winner_hlc INTEGER NOT NULL,"
        " loser_origin TEXT NOT NULL, loser_seq INTEGER NOT NULL, loser_hlc INTEGER NOT NULL,"
        " loser_deleted INTEGER NOT NULL, loser_image BLOB, at_ms INTEGER NOT NULL);"
        "CREATE TABLE IF NOT EXISTS _edge_crdt_cells(tbl TEXT NOT NULL, pk BLOB NOT NULL, col TEXT NOT NULL,"
        " state BLOB NOT NULL, PRIMARY KEY(tbl, pk, col)) WITHOUT ROWID;"
        "CREATE TABLE IF NOT EXISTS _edge_renames(kind TEXT NOT NULL, tbl TEXT NOT NULL, old TEXT NOT NULL,"
        " new TEXT NOT NULL, PRIMARY KEY(kind, tbl, old)) WITHOUT ROWID;"
        "CREATE TABLE IF NOT EXISTS _edge_apply_errors(origin TEXT NOT NULL, seq INTEGER NOT NULL,"
        " hlc INTEGER NOT NULL, consistency INTEGER NOT NULL, deps BLOB NOT NULL, payload BLOB NOT NULL,"
        " reason TEXT NOT NULL, first_ms INTEGER NOT NULL, last_ms INTEGER NOT NULL, attempts INTEGER NOT NULL,"
        " PRIMARY KEY(origin, seq)) WITHOUT ROWID;"
        "CREATE TABLE IF NOT EXISTS _edge_gc(name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;";
    char *err = NULL;
    int rc = sqlite3_exec(db, ddl, NULL, NULL, &err);
    /* Columns added since the first release of these tables. */
    static const struct {
        const char *table, *column, *ddl;
    } added[] = {
        {"_edge_rows", "hidden", "ALTER TABLE _edge_rows ADD COLUMN hidden INTEGER NOT NULL DEFAULT 0"},
        {"_edge_conflicts", "kind", "ALTER TABLE _edge_conflicts ADD COLUMN kind TEXT NOT NULL DEFAULT 'row'"},
    };
    for (size_t i = 0; rc == SQLITE_OK && i < sizeof(added) / sizeof(added[0]); i++) {
        sqlite3_stmt *st = NULL;
        bool have = false;
        rc = sqlite3_prepare_v2(db, "SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2", -1, &st, NULL);
        if (rc == SQLITE_OK) {
            sqlite3_bind_text(st, 1, added[i].table, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, added[i].column, -1, SQLITE_STATIC);
            have = sqlite3_step(st) == SQLITE_ROW;
        }
        sqlite3_finalize(st);
        if (rc == SQLITE_OK && !have) rc = sqlite3_exec(db, added[i].ddl, NULL, NULL, &err);
    }
    if (rc == SQLITE_OK) {
        rc = sqlite3_exec(db, "CREATE INDEX IF NOT EXISTS _edge_rows_hidden ON _edge_rows(hidden) WHERE hidden != 0;"
                          /* the change feed finds an entry's conflicts by either version (feed_conflicts.c) */
                          "CREATE INDEX IF NOT EXISTS _edge_conflicts_winner ON _edge_conflicts(winner_origin, winner_seq);"
                          "CREATE INDEX IF NOT EXISTS _edge_conflicts_loser ON _edge_conflicts(loser_origin, loser_seq)",
                          NULL, NULL, &err);
    }
    if (rc == SQLITE_OK) {
        /* Tombstones, for their count and their collection (tomb.c) without a walk of
         * every row's metadata. */
        rc = sqlite3_exec(db,
                          "CREATE INDEX IF NOT EXISTS _edge_rows_tomb ON _edge_rows(tbl, pk) WHERE deleted = 1;"
                          /* the count, kept up to date by edge__meta_put and tomb.c from then on */
                          "INSERT INTO _edge_gc(name, value) SELECT 'tombstones',"
                          " (SELECT count(*) FROM _edge_rows WHERE deleted = 1)"
                          " WHERE NOT EXISTS (SELECT 1 FROM _edge_gc WHERE name = 'tombstones')",
                          NULL, NULL, &err);
    }
    if (rc != SQLITE_OK) {
        snprintf(errmsg, errmsg_len, "cannot create the replication tables: %s", err ? err : sqlite3_errstr(rc));
        sqlite3_free(err);
        return EDGE_ESTORE;
    }
    return EDGE_OK;
}
