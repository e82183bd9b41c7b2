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
 * value is free or it now wins it).
 *
 * FILES
 * This file: entries (sequence and dependency checks, the payload and its schema
 * changes), batches (one transaction, a savepoint per entry, entries that fail for good
 * kept in _edge_apply_errors) and the table-shape cache. apply_merge.c: merging an
 * operation into a row's registers and the statements that write the result.
 * apply_repair.c: the end-of-batch rules above (UNIQUE, FOREIGN KEY) and hidden rows.
 * apply_sess.c: the rows of _edge_sessions, ordered as whole records by their version vector.
 * Shared declarations: apply_int.h. */
#include "repl/apply_int.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/alloc.h"
#include "core/log.h"
#include "repl/proto.h"
#include "repl/tomb.h"

static uint64_t wall_ms(void) { return edge_wall_ms(); }

void edge__repl_tcache_clear(struct edge__repl_actx *x)
{
    while (x->tables != NULL) {
        struct edge__repl_tnode *n = x->tables;
        x->tables = n->next;
        edge__tinfo_free(&n->t);
        edge_free(n);
    }
}

/* The table's shape (pointers stay valid until tcache_clear). NULL: no such table. */
const struct edge__tinfo *edge__repl_tinfo(struct edge__repl_actx *x, const char *table)
{
    for (struct edge__repl_tnode *n = x->tables; n != NULL; n = n->next) {
        if (strcmp(n->t.name, table) == 0) return &n->t;
    }
    struct edge__repl_tnode *n = edge_calloc(1, sizeof(*n));
    if (n == NULL) return NULL;
    if (edge__tinfo_load(x->db, table, &n->t) != EDGE_OK) {
        edge_free(n);
        return NULL;
    }
    n->next = x->tables;
    x->tables = n;
    return &n->t;
}

void edge__repl_touch(struct edge__repl_actx *x, const char *table)
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
static int apply_payload(struct edge__repl_actx *x, const char *origin, uint64_t seq, uint64_t hlc,
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
            edge__repl_tcache_clear(x);
            x->any_write = true;
            x->touched_many = true;
            continue;
        }
        if (kind == EDGE_REPL_OP_CRDT) {
            const char *type, *delta;
            size_t type_len, delta_len;
            if (edge__repl_get_str(&rd, &type, &type_len) != EDGE_OK ||
                edge__repl_get_str(&rd, &delta, &delta_len) != EDGE_OK) {
                rv = EDGE_ECORRUPT;
                break;
            }
            rv = edge__repl_crdt_apply(db, origin, tname, tlen, type, type_len, (const uint8_t *)delta, delta_len,
                                       errmsg, errmsg_len);
            x->any_write = true;
            continue;
        }
        if (kind == EDGE_REPL_OP_OLD) {
            rv = edge__repl_skip_old(&rd); /* the change feed's, not the row's */
            continue;
        }
        bool rowx = kind == EDGE_REPL_OP_ROWX;
        if (rowx) kind = EDGE_REPL_OP_ROW; /* a row with pn-counter differences (crdt_cols.c) */
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
        /* pn-counter differences: payload column and amount */
        uint64_t n_deltas = 0;
        uint64_t *d_col = NULL;
        int64_t *d_val = NULL;
        uint8_t *d_kind = NULL;
        const uint8_t **d_set = NULL; /* or-set deltas */
        size_t *d_len = NULL;
        if (rv == EDGE_OK && rowx) {
            if (edge__repl_get_varint(&rd, &n_deltas) != EDGE_OK || n_deltas == 0 || n_deltas > n) {
                rv = EDGE_ECORRUPT;
            } else {
                d_col = edge_calloc((size_t)n_deltas, sizeof(*d_col));
                d_val = edge_calloc((size_t)n_deltas, sizeof(*d_val));
                d_kind = edge_calloc((size_t)n_deltas, sizeof(*d_kind));
                d_set = edge_calloc((size_t)n_deltas, sizeof(*d_set));
                d_len = edge_calloc((size_t)n_deltas, sizeof(*d_len));
                rv = d_col && d_val && d_kind && d_set && d_len ? EDGE_OK : EDGE_ENOMEM;
            }
            for (uint64_t i = 0; i < n_deltas && rv == EDGE_OK; i++) {
                uint64_t z;
                if (edge__repl_get_varint(&rd, &d_col[i]) != EDGE_OK || d_col[i] >= n ||
                    edge__repl_get_u8(&rd, &d_kind[i]) != EDGE_OK || (d_kind[i] != 1 && d_kind[i] != 2)) {
                    rv = EDGE_ECORRUPT;
                    break;
                }
                if (d_kind[i] == 2) {
                    const char *ds;
                    if (edge__repl_get_str(&rd, &ds, &d_len[i]) != EDGE_OK) rv = EDGE_ECORRUPT;
                    d_set[i] = (const uint8_t *)ds;
                    continue;
                }
                if (edge__repl_get_varint(&rd, &z) != EDGE_OK) {
                    rv = EDGE_ECORRUPT;
                    break;
                }
                d_val[i] = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
            }
        }
        if (rv != EDGE_OK) {
            edge_free(stamps);
            edge_free(d_col);
            edge_free(d_val);
            edge_free(d_kind);
            edge_free(d_set);
            edge_free(d_len);
            break;
        }
        const struct edge__tinfo *t = edge__repl_tinfo(x, table);
        if (t == NULL) {
            /* renamed here (concurrently with the write, or since) */
            char now[256];
            if (edge__renames_resolve(db, NULL, table, strlen(table), now, sizeof(now)) == EDGE_OK) {
                t = edge__repl_tinfo(x, now);
            }
        }
        if (t == NULL || t->pk.npk == 0) {
            snprintf(errmsg, errmsg_len, "entry %s:%llu: table %s is missing or has no primary key here", origin,
                     (unsigned long long)seq, table);
            edge_free(stamps);
            edge_free(d_col);
            edge_free(d_val);
            edge_free(d_kind);
            edge_free(d_set);
            edge_free(d_len);
            rv = EDGE_ESTORE;
            break;
        }
        int nc = t->pk.ncols;
        int *lcol = n_deltas ? edge_calloc((size_t)n, sizeof(*lcol)) : NULL; /* payload column -> column here */
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
            if (lcol != NULL) lcol[i] = c;
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
        bool applied = false, before = false;
        int64_t *pre = n_deltas ? edge_calloc((size_t)n_deltas, sizeof(*pre)) : NULL;
        if (rv == EDGE_OK && n_deltas > 0 && (lcol == NULL || pre == NULL)) rv = EDGE_ENOMEM;
        for (uint64_t i = 0; i < n_deltas && rv == EDGE_OK; i++) {
            int c = lcol[d_col[i]];
            if (c >= 0 && d_kind[i] == 1) {
                rv = edge__crdt_counter_read(db, t, c, pkb.data ? pkb.data : "", pkb.len, &before, &pre[i]);
            }
        }
        if (rv == EDGE_OK && kind == EDGE_REPL_OP_ROW) {
            rv = edge__repl_merge_row(x, t, pkb.data ? pkb.data : "", pkb.len, iv, il, is, &opst, deps, &applied);
        } else if (rv == EDGE_OK) {
            rv = edge__repl_merge_delete(x, t, pkb.data ? pkb.data : "", pkb.len, &opst, deps, &applied);
        }
        /* The counters: what they held here plus the origin's difference. A row this
         * operation brought into the table takes the origin's values as they are. */
        for (uint64_t i = 0; i < n_deltas && rv == EDGE_OK && before; i++) {
            int c = lcol[d_col[i]];
            bool now = false;
            int64_t cur = 0, want;
            if (c < 0 || d_kind[i] != 1) continue;
            rv = edge__crdt_counter_read(db, t, c, pkb.data ? pkb.data : "", pkb.len, &now, &cur);
            if (rv != EDGE_OK || !now) break;
            if (__builtin_add_overflow(pre[i], d_val[i], &want)) {
                snprintf(errmsg, errmsg_len, "entry %s:%llu: %s.%s: the counter would leave 64 bits", origin,
                         (unsigned long long)seq, table, t->cols[c]);
                rv = EDGE_ESTORE;
                break;
            }
            if (cur != want) rv = edge__crdt_counter_write(db, t, c, pkb.data ? pkb.data : "", pkb.len, want);
        }
        /* or-set columns: the delta joins the cell's set, shown in the column */
        for (uint64_t i = 0; i < n_deltas && rv == EDGE_OK && kind == EDGE_REPL_OP_ROW; i++) {
            int c = lcol[d_col[i]];
            if (c < 0 || d_kind[i] != 2) continue;
            rv = edge__crdt_set_merge(db, t, c, pkb.data ? pkb.data : "", pkb.len, d_set[i], d_len[i]);
            if (rv == EDGE_ECORRUPT) {
                snprintf(errmsg, errmsg_len, "entry %s:%llu: %s.%s: a bad or-set delta", origin,
                         (unsigned long long)seq, table, t->cols[c]);
            }
        }
        edge_free(pre);
        edge_free(lcol);
        edge_free(d_col);
        edge_free(d_val);
        edge_free(d_kind);
        edge_free(d_set);
        edge_free(d_len);
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

static int apply_one(struct edge__repl_actx *x, const char *origin, uint64_t seq, uint64_t hlc, int consistency,
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
    struct edge__repl_actx x;
    memset(&x, 0, sizeof(x));
    x.db = db;
    x.stats = stats;
    x.guarded = true; /* the caller's transaction, the caller's settings */
    int rv = apply_one(&x, origin, seq, hlc, consistency, deps, payload, payload_len, errmsg, errmsg_len);
    edge__repl_tcache_clear(&x);
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

int edge__repl_exec(sqlite3 *db, const char *sql)
{
    return edge_store_exec_kept(db, sql); /* parsed once per connection */
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
bool edge__repl_schema_has(sqlite3 *db, const char *q)
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
    env->trig_off = env->old_trig && (force || edge__repl_schema_has(db, EDGE__Q_HAS_TRIGGERS));
    env->fk_off = env->old_fk && (force || edge__repl_schema_has(db, EDGE__Q_HAS_FKS));
    if (env->trig_off) sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_TRIGGER, 0, NULL);
    if (env->fk_off) edge__repl_exec(db, "PRAGMA foreign_keys = OFF");
    if (edge__repl_exec(db, "BEGIN IMMEDIATE") != SQLITE_OK) {
        snprintf(errmsg, errmsg_len, "apply: cannot begin: %s", sqlite3_errmsg(db));
        if (env->fk_off) edge__repl_exec(db, "PRAGMA foreign_keys = ON");
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
    if (commit && edge__repl_exec(db, "COMMIT") != SQLITE_OK) {
        rv = EDGE_ESTORE;
        commit = false;
    }
    if (!commit && !sqlite3_get_autocommit(db)) edge__repl_exec(db, "ROLLBACK");
    if (env->fk_off) edge__repl_exec(db, "PRAGMA foreign_keys = ON");
    if (env->trig_off) sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_TRIGGER, env->old_trig, NULL);
    return rv;
}

/* Frames of the batch whose last entry comes before entry i (all of them for count) are
 * done: their callback runs, inside the transaction. */
static int frames_done(sqlite3 *db, const struct edge_repl_frames *fr, size_t *k, size_t i)
{
    int rv = EDGE_OK;
    while (fr != NULL && rv == EDGE_OK && *k < fr->n && fr->ends[*k] <= i) {
        rv = fr->on_frame(fr->ud, db, (*k)++);
    }
    return rv;
}

static int apply_batch_once(sqlite3 *db, const struct edge_repl_local *local, uint64_t max_skew_ms,
                            const struct edge_repl_entry *entries, size_t count, const struct edge_repl_frames *fr,
                            struct edge_repl_apply_stats *stats, bool force, bool *out_restart, char *errmsg,
                            size_t errmsg_len)
{
    size_t kf = 0;
    *out_restart = false;
    struct batch_env env;
    int rv = batch_begin(db, &env, force, errmsg, errmsg_len);
    if (rv != EDGE_OK) return rv;
    struct edge__repl_actx x;
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
        rv = frames_done(db, fr, &kf, i);
        if (rv != EDGE_OK) {
            snprintf(errmsg, errmsg_len, "apply: cannot read the version vector after a frame");
            break;
        }
        edge__repl_exec(db, "SAVEPOINT edge_apply");
        uint64_t before = st.applied;
        int arv = apply_one(&x, e->origin, e->seq, e->hlc, e->consistency, &e->deps, e->payload, e->payload_len, err,
                            sizeof(err));
        int ec = sqlite3_errcode(db); /* before the savepoint statements overwrite it */
        if (arv == EDGE_OK) {
            edge__repl_exec(db, "RELEASE edge_apply");
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
        edge__repl_exec(db, "ROLLBACK TO edge_apply");
        edge__repl_exec(db, "RELEASE edge_apply");
        edge__repl_tcache_clear(&x);
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
        rv = frames_done(db, fr, &kf, count);
        if (rv != EDGE_OK) snprintf(errmsg, errmsg_len, "apply: cannot read the version vector after a frame");
    }
    if (rv == EDGE_OK) {
        rv = edge__repl_fixup(&x);
        if (rv != EDGE_OK) snprintf(errmsg, errmsg_len, "apply: constraint repair failed: %s", sqlite3_errmsg(db));
    }
    edge__repl_tcache_clear(&x);
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
        stats->horizon_drops += st.horizon_drops;
        stats->session_merges += st.session_merges;
        if (st.max_hlc > stats->max_hlc) stats->max_hlc = st.max_hlc;
    } else if (!x.restart) {
        stats->deferred += st.deferred;
    }
    *out_restart = x.restart;
    return rv;
}

int edge_repl_apply_frames(sqlite3 *db, const struct edge_repl_local *local, uint64_t max_skew_ms,
                           const struct edge_repl_entry *entries, size_t count, const struct edge_repl_frames *fr,
                           struct edge_repl_apply_stats *stats, char *errmsg, size_t errmsg_len)
{
    bool restart = false;
    int rv = apply_batch_once(db, local, max_skew_ms, entries, count, fr, stats, false, &restart, errmsg, errmsg_len);
    if (restart) {
        errmsg[0] = '\0';
        rv = apply_batch_once(db, local, max_skew_ms, entries, count, fr, stats, true, &restart, errmsg, errmsg_len);
    }
    return rv;
}

int edge_repl_apply_batch(sqlite3 *db, const struct edge_repl_local *local, uint64_t max_skew_ms,
                          const struct edge_repl_entry *entries, size_t count, struct edge_repl_apply_stats *stats,
                          char *errmsg, size_t errmsg_len)
{
    return edge_repl_apply_frames(db, local, max_skew_ms, entries, count, NULL, stats, errmsg, errmsg_len);
}

int edge_repl_retry_apply_errors(sqlite3 *db, const struct edge_repl_local *local,
                                 struct edge_repl_apply_stats *stats, uint64_t *out_left, char *errmsg,
                                 size_t errmsg_len)
{
    *out_left = 0;
    struct batch_env env;
    int rv = batch_begin(db, &env, true, errmsg, errmsg_len);
    if (rv != EDGE_OK) return rv;
    struct edge__repl_actx x;
    memset(&x, 0, sizeof(x));
    x.db = db;
    struct edge_repl_apply_stats st;
    memset(&st, 0, sizeof(st));
    x.guarded = true;
    x.stats = &st;
    /* A kept entry is older than the horizon as a rule, and a row it inserts into a table
     * created since has no metadata: the horizon rule would drop it. */
    x.retrying = true;
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
        edge__repl_exec(db, "SAVEPOINT edge_retry");
        if (arv == EDGE_OK) {
            arv = apply_payload(&x, origin, seq, hlc, &deps, sqlite3_column_blob(q, 4),
                                (size_t)sqlite3_column_bytes(q, 4), err, sizeof(err));
        }
        int ec = sqlite3_errcode(db);
        if (arv == EDGE_OK) {
            edge__repl_exec(db, "RELEASE edge_retry");
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
            edge__repl_exec(db, "ROLLBACK TO edge_retry");
            edge__repl_exec(db, "RELEASE edge_retry");
            edge__repl_tcache_clear(&x);
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
    if (rv == EDGE_OK) rv = edge__repl_fixup(&x);
    edge__repl_tcache_clear(&x);
    int erv = batch_end(db, &env, local, rv == EDGE_OK, &st);
    if (rv == EDGE_OK) rv = erv;
    if (rv == EDGE_OK) {
        stats->applied += st.applied;
        stats->rows += st.rows;
        stats->conflicts += st.conflicts;
        stats->session_merges += st.session_merges;
        stats->hidden += st.hidden;
        stats->restored += st.restored;
        if (st.max_hlc > stats->max_hlc) stats->max_hlc = st.max_hlc;
    }
    return rv;
}

uint64_t edge_repl_apply_error_count(sqlite3 *db)
{
    return (uint64_t)edge_store_query_int(db, "SELECT count(*) FROM _edge_apply_errors", 0);
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
    /* Collected tombstones are gone from _edge_rows, their stamps not from the rule
     * that a new write stamps above them (the horizon rule counts on it). */
    uint64_t h = edge_repl_tomb_horizon(db);
    if (h > best) best = h;
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
        if (kind == EDGE_REPL_OP_OLD) {
            if (edge__repl_skip_old(&rd) != EDGE_OK) return EDGE_ECORRUPT;
            continue; /* not an op on the table: the change feed's image */
        }
        if (kind == EDGE_REPL_OP_DDL) {
            const char *s;
            size_t sl;
            if (edge__repl_get_str(&rd, &s, &sl) != EDGE_OK) return EDGE_ECORRUPT;
        } else if (kind == EDGE_REPL_OP_CRDT) {
            const char *s;
            size_t sl;
            if (edge__repl_get_str(&rd, &s, &sl) != EDGE_OK || edge__repl_get_str(&rd, &s, &sl) != EDGE_OK) {
                return EDGE_ECORRUPT;
            }
        } else if (kind == EDGE_REPL_OP_ROW || kind == EDGE_REPL_OP_DELETE || kind == EDGE_REPL_OP_ROWX) {
            if (edge__repl_get_varint(&rd, &n) != EDGE_OK || n == 0 || n > 32767) return EDGE_ECORRUPT;
            for (uint64_t i = 0; i < n; i++) {
                const char *s;
                size_t sl;
                if (edge__repl_get_str(&rd, &s, &sl) != EDGE_OK) return EDGE_ECORRUPT;
            }
            for (uint64_t i = 0; i < n; i++) {
                if (edge__repl_skip_value(&rd) != EDGE_OK) return EDGE_ECORRUPT;
            }
            if (kind != EDGE_REPL_OP_DELETE) {
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
            if (kind == EDGE_REPL_OP_ROWX) {
                uint64_t nd, v;
                uint8_t dk;
                if (edge__repl_get_varint(&rd, &nd) != EDGE_OK || nd > n) return EDGE_ECORRUPT;
                for (uint64_t i = 0; i < nd; i++) {
                    const char *ds;
                    size_t dl;
                    if (edge__repl_get_varint(&rd, &v) != EDGE_OK || edge__repl_get_u8(&rd, &dk) != EDGE_OK ||
                        (dk == 2 ? edge__repl_get_str(&rd, &ds, &dl) : edge__repl_get_varint(&rd, &v)) != EDGE_OK) {
                        return EDGE_ECORRUPT;
                    }
                }
                kind = EDGE_REPL_OP_ROW;
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
