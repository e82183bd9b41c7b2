/* SPDX-License-Identifier: MIT */
/* CRDT columns in SQL tables (replication.crdt_columns, docs/crdt.md).
 *
 * DESIGN. A pn-counter column merges additively. Where a write runs, capture sees the
 * column's old and new value (preupdate hook) and ships the difference in the row
 * operation (EDGE_REPL_OP_ROWX): an INSERT contributes its value, an UPDATE new - old,
 * whatever the statement said (`views = views + 1` ships +1; `views = 10` over a 7
 * ships +3: an absolute assignment is the difference it made where it ran). A region applying the operation merges the
 * rest of the row by the usual per-column rules, then sets the counter to the value it
 * held before plus the difference: concurrent increments in every region all count.
 * When the row was not in the table here before and the operation brings it (back), the
 * origin's value is taken as it is, since it already holds every difference this region
 * has seen from the origin. Entries are applied once per (origin, seq), so a difference
 * is never added twice. The rest of the row keeps per-column last-writer-wins. */
#include "repl/repl_int.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "crdt/crdt.h"
#include "edgelite/crdt.h"

/* Declared type's affinity class, by SQLite's rules (datatype3 3.1). */
static bool affinity_integer(const char *t) { return t != NULL && strcasestr(t, "INT") != NULL; }

static bool affinity_text(const char *t)
{
    return t != NULL && !affinity_integer(t) &&
           (strcasestr(t, "CHAR") != NULL || strcasestr(t, "CLOB") != NULL || strcasestr(t, "TEXT") != NULL);
}

int edge__crdt_cols_check(sqlite3 *db, const struct edge_conf_crdt *cc, char *errmsg, size_t errmsg_len)
{
    static const char q[] = "SELECT type, pk FROM pragma_table_info(?1) WHERE name = ?2 COLLATE NOCASE";
    static const char qt[] = "SELECT 1 FROM main.sqlite_schema WHERE type = 'table' AND name = ?1 COLLATE NOCASE";
    for (size_t i = 0; cc != NULL && i < cc->n_cols; i++) {
        const struct edge_conf_crdt_column *c = &cc->cols[i];
        sqlite3_stmt *st = edge__repl_stmt(db, qt, sizeof(qt) - 1);
        if (st == NULL) return EDGE_ESTORE;
        sqlite3_bind_text(st, 1, c->table, -1, SQLITE_STATIC);
        bool table = sqlite3_step(st) == SQLITE_ROW;
        edge__repl_done(st);
        if (!table) continue; /* checked when it appears */
        st = edge__repl_stmt(db, q, sizeof(q) - 1);
        if (st == NULL) return EDGE_ESTORE;
        sqlite3_bind_text(st, 1, c->table, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, c->column, -1, SQLITE_STATIC);
        int rc = sqlite3_step(st);
        const char *type = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
        int pk = rc == SQLITE_ROW ? sqlite3_column_int(st, 1) : 0;
        const char *why = NULL;
        if (rc != SQLITE_ROW) {
            why = "the table has no such column";
        } else if (pk > 0) {
            why = "a primary key column cannot be a CRDT";
        } else if (c->kind == EDGE_CONF_CRDT_COUNTER && !affinity_integer(type)) {
            why = "a pn-counter column must be declared INTEGER";
        } else if (c->kind == EDGE_CONF_CRDT_ORSET && !affinity_text(type)) {
            why = "an or-set column must be declared TEXT (it holds a JSON array)";
        }
        if (why != NULL) {
            snprintf(errmsg, errmsg_len, "replication.crdt_columns: %s.%s (declared %s): %s", c->table, c->column,
                     type && type[0] ? type : "without a type", why);
        }
        edge__repl_done(st);
        if (why != NULL) return EDGE_ECONFIG;
    }
    return EDGE_OK;
}

/* "SELECT "col" FROM "t" WHERE pk IS ? ..." or "UPDATE "t" SET "col" = ?N WHERE ...". */
static int by_pk(sqlite3 *db, const struct edge__tinfo *t, int col, bool update, const void *pk, size_t pklen,
                 sqlite3_stmt **out)
{
    struct edge_buf sql;
    edge_buf_init(&sql, 1 << 20);
    int rv = edge_buf_puts(&sql, update ? "UPDATE " : "SELECT ");
    if (rv == EDGE_OK) rv = edge_store_quote_ident(&sql, update ? t->name : t->cols[col]);
    if (rv == EDGE_OK) rv = edge_buf_puts(&sql, update ? " SET " : " FROM ");
    if (rv == EDGE_OK) rv = edge_store_quote_ident(&sql, update ? t->cols[col] : t->name);
    if (rv == EDGE_OK && update) rv = edge_buf_printf(&sql, " = ?%d", t->pk.npk + 1);
    if (rv != EDGE_OK) {
        edge_buf_free(&sql);
        return rv;
    }
    return edge__repl_where_pk(db, t, &sql, pk, pklen, out);
}

int edge__crdt_counter_read(sqlite3 *db, const struct edge__tinfo *t, int col, const void *pk, size_t pklen,
                            bool *out_found, int64_t *out_value)
{
    sqlite3_stmt *st = NULL;
    *out_found = false;
    *out_value = 0;
    int rv = by_pk(db, t, col, false, pk, pklen, &st);
    if (rv != EDGE_OK) return rv;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *out_found = true;
        *out_value = sqlite3_column_int64(st, 0); /* NULL counts as 0 */
    } else if (rc != SQLITE_DONE) {
        rv = EDGE_ESTORE;
    }
    edge__repl_done(st);
    return rv;
}

int edge__crdt_counter_write(sqlite3 *db, const struct edge__tinfo *t, int col, const void *pk, size_t pklen,
                             int64_t value)
{
    sqlite3_stmt *st = NULL;
    int rv = by_pk(db, t, col, true, pk, pklen, &st);
    if (rv != EDGE_OK) return rv;
    sqlite3_bind_int64(st, t->pk.npk + 1, value);
    if (sqlite3_step(st) != SQLITE_DONE) rv = EDGE_ESTORE;
    edge__repl_done(st);
    return rv;
}

int edge__crdt_value_int(const uint8_t *v, size_t len, int64_t *out)
{
    *out = 0;
    if (len == 0 || v[0] == 0 || v[0] == 5 /* capture's "unknown": the default */) return EDGE_OK;
    if (v[0] != 1) return EDGE_EINVAL;
    struct edge__rd r = {v + 1, len - 1, 0};
    uint64_t z;
    if (edge__repl_get_varint(&r, &z) != EDGE_OK) return EDGE_ECORRUPT;
    *out = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
    return EDGE_OK;
}

/* ---------------------------------------------------------------------------------- */
/* or-set columns                                                                     */
/* ---------------------------------------------------------------------------------- */
/* DESIGN. The column shows an OR-Set kept per cell in _edge_crdt_cells (table, primary
 * key, column): the set is the truth, the column its canonical JSON array (elements as
 * compact JSON with sorted keys, in bytewise order), rewritten wherever the set changes.
 * A write is compared with the set (or, for a cell never written, with the value it
 * replaced): elements it added are added with this region's dots, elements it dropped
 * are removed, and that delta travels in the row operation. Merging it elsewhere is the
 * OR-Set join: a concurrent add of an element another region removed survives. */

static int elem_json_cb(void *ud, const uint8_t *elem, size_t len)
{
    struct edge_buf *b = ud;
    int rv = b->len > 1 ? edge_buf_putc(b, ',') : EDGE_OK;
    return rv == EDGE_OK ? edge_buf_append(b, elem, len) : rv;
}

/* The elements of an encoded column value: a JSON array (NULL or '' = empty) as an
 * array of canonical element texts (each malloc'ed by jansson). EDGE_EINVAL if it is
 * not a JSON array in text. */
struct elems {
    char **v;
    size_t n;
};

static void elems_free(struct elems *e)
{
    for (size_t i = 0; i < e->n; i++) free(e->v[i]);
    edge_free(e->v);
    e->v = NULL;
    e->n = 0;
}

static int elems_parse(const uint8_t *val, size_t len, struct elems *out)
{
    memset(out, 0, sizeof(*out));
    if (len == 0 || val[0] == 0 || val[0] == 5) return EDGE_OK;
    if (val[0] != 3) return EDGE_EINVAL;
    struct edge__rd r = {val + 1, len - 1, 0};
    const char *s;
    size_t n;
    if (edge__repl_get_str(&r, &s, &n) != EDGE_OK) return EDGE_ECORRUPT;
    if (n == 0) return EDGE_OK;
    json_error_t jerr;
    json_t *a = json_loadb(s, n, 0, &jerr);
    if (a == NULL || !json_is_array(a)) {
        json_decref(a);
        return EDGE_EINVAL;
    }
    int rv = EDGE_OK;
    out->v = edge_calloc(json_array_size(a) + 1, sizeof(*out->v));
    if (out->v == NULL) rv = EDGE_ENOMEM;
    for (size_t i = 0; rv == EDGE_OK && i < json_array_size(a); i++) {
        char *e = json_dumps(json_array_get(a, i), JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        if (e == NULL) {
            rv = EDGE_ENOMEM;
            break;
        }
        out->v[out->n++] = e;
    }
    json_decref(a);
    if (rv != EDGE_OK) elems_free(out);
    return rv;
}

static bool elems_has(const struct elems *e, const uint8_t *x, size_t len)
{
    for (size_t i = 0; i < e->n; i++) {
        if (strlen(e->v[i]) == len && memcmp(e->v[i], x, len) == 0) return true;
    }
    return false;
}

int edge__crdt_set_check(const uint8_t *val, size_t len)
{
    struct elems e;
    int rv = elems_parse(val, len, &e);
    elems_free(&e);
    return rv;
}

static const char q_cell_get[] = "SELECT state FROM _edge_crdt_cells WHERE tbl = ?1 AND pk = ?2 AND col = ?3";
static const char q_cell_put[] = "INSERT INTO _edge_crdt_cells(tbl, pk, col, state) VALUES (?1, ?2, ?3, ?4)"
                                 " ON CONFLICT(tbl, pk, col) DO UPDATE SET state = excluded.state";

static int cell_load(sqlite3 *db, const struct edge__tinfo *t, int col, const void *pk, size_t pklen,
                     struct edge_crdt **out, bool *out_found)
{
    sqlite3_stmt *st = edge__repl_stmt(db, q_cell_get, sizeof(q_cell_get) - 1);
    if (st == NULL) return EDGE_ESTORE;
    sqlite3_bind_text(st, 1, t->name, -1, SQLITE_STATIC);
    sqlite3_bind_blob64(st, 2, pk, pklen, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, t->cols[col], -1, SQLITE_STATIC);
    int rc = sqlite3_step(st), rv;
    *out_found = rc == SQLITE_ROW;
    if (rc == SQLITE_ROW) {
        rv = edge_crdt_decode(sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0), out);
        if (rv == EDGE_OK && edge_crdt_type_of(*out) != EDGE_CRDT_ORSET) rv = EDGE_ECORRUPT;
    } else if (rc == SQLITE_DONE) {
        rv = edge_crdt_create(EDGE_CRDT_ORSET, out);
    } else {
        rv = EDGE_ESTORE;
    }
    edge__repl_done(st);
    return rv;
}

/* Save the set and show it in the column (when the row is in its table). */
static int cell_save(sqlite3 *db, const struct edge__tinfo *t, int col, const void *pk, size_t pklen,
                     const struct edge_crdt *set)
{
    uint8_t *enc = NULL;
    size_t len = 0;
    struct edge_buf js;
    edge_buf_init(&js, (size_t)1 << 30);
    int rv = edge_crdt_encode(set, &enc, &len);
    sqlite3_stmt *st = rv == EDGE_OK ? edge__repl_stmt(db, q_cell_put, sizeof(q_cell_put) - 1) : NULL;
    if (rv == EDGE_OK && st == NULL) rv = EDGE_ESTORE;
    if (rv == EDGE_OK) {
        sqlite3_bind_text(st, 1, t->name, -1, SQLITE_STATIC);
        sqlite3_bind_blob64(st, 2, pk, pklen, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, t->cols[col], -1, SQLITE_STATIC);
        sqlite3_bind_blob64(st, 4, enc, len, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE) rv = EDGE_ESTORE;
    }
    edge__repl_done(st);
    if (rv == EDGE_OK) rv = edge_buf_putc(&js, '[');
    if (rv == EDGE_OK) rv = edge_crdt_foreach(set, elem_json_cb, &js);
    if (rv == EDGE_OK) rv = edge_buf_putc(&js, ']');
    st = NULL;
    bool same = false; /* already shown so: no write, no trigger runs for it */
    if (rv == EDGE_OK && (rv = by_pk(db, t, col, false, pk, pklen, &st)) == EDGE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_TEXT) {
            same = (size_t)sqlite3_column_bytes(st, 0) == js.len &&
                   memcmp(sqlite3_column_text(st, 0), js.data, js.len) == 0;
        }
        edge__repl_done(st);
        st = NULL;
    }
    if (rv == EDGE_OK && !same) rv = by_pk(db, t, col, true, pk, pklen, &st);
    if (rv == EDGE_OK && !same) {
        sqlite3_bind_text64(st, t->pk.npk + 1, js.data, js.len, SQLITE_STATIC, SQLITE_UTF8);
        if (sqlite3_step(st) != SQLITE_DONE) rv = EDGE_ESTORE;
        edge__repl_done(st);
    }
    edge_free(enc);
    edge_buf_free(&js);
    return rv;
}

struct set_diff {
    struct edge_crdt *set, *delta;
    const struct elems *keep;
    const char *region;
    char **gone; /* elements of set not in keep (collected, removed after the walk) */
    size_t n_gone;
    int rv;
};

static int gone_cb(void *ud, const uint8_t *elem, size_t len)
{
    struct set_diff *d = ud;
    if (elems_has(d->keep, elem, len)) return 0;
    char **v = edge_realloc(d->gone, (d->n_gone + 1) * sizeof(*v));
    if (v == NULL) return EDGE_ENOMEM;
    d->gone = v;
    if ((d->gone[d->n_gone] = edge_strndup((const char *)elem, len)) == NULL) return EDGE_ENOMEM;
    d->n_gone++;
    return 0;
}

/* One local change of set, joined into the cumulative delta. */
static int diff_step(struct set_diff *d, bool add, const char *elem)
{
    struct edge_crdt *one = NULL;
    int rv = add ? edge_crdt_add(d->set, d->region, elem, strlen(elem), &one)
                 : edge_crdt_remove(d->set, d->region, elem, strlen(elem), &one);
    if (rv == EDGE_OK) rv = edge_crdt_merge(d->delta, one, NULL);
    edge_crdt_destroy(one);
    return rv;
}

int edge__crdt_set_write(sqlite3 *db, const char *region, const struct edge__tinfo *t, int col, const void *pk,
                         size_t pklen, const uint8_t *oldv, size_t oldl, const uint8_t *newv, size_t newl,
                         struct edge_buf *delta_out)
{
    struct elems now, was;
    struct set_diff d = {0};
    bool found = false;
    uint8_t *enc = NULL;
    size_t enc_len = 0;
    memset(&was, 0, sizeof(was));
    int rv = elems_parse(newv, newl, &now);
    if (rv == EDGE_OK) rv = cell_load(db, t, col, pk, pklen, &d.set, &found);
    if (rv == EDGE_OK) rv = edge_crdt_create(EDGE_CRDT_ORSET, &d.delta);
    if (rv == EDGE_OK && !found && oldv != NULL) {
        /* a cell never written through a CRDT column: what it held counts as added here */
        rv = elems_parse(oldv, oldl, &was);
        for (size_t i = 0; rv == EDGE_OK && i < was.n; i++) rv = diff_step(&d, true, was.v[i]);
    }
    d.keep = &now;
    d.region = region;
    if (rv == EDGE_OK) rv = edge_crdt_foreach(d.set, gone_cb, &d);
    for (size_t i = 0; rv == EDGE_OK && i < d.n_gone; i++) rv = diff_step(&d, false, d.gone[i]);
    for (size_t i = 0; rv == EDGE_OK && i < now.n; i++) {
        if (!edge_crdt_contains(d.set, now.v[i], strlen(now.v[i]))) rv = diff_step(&d, true, now.v[i]);
    }
    if (rv == EDGE_OK) rv = cell_save(db, t, col, pk, pklen, d.set);
    if (rv == EDGE_OK) rv = edge_crdt_encode(d.delta, &enc, &enc_len);
    if (rv == EDGE_OK) rv = edge__repl_put_str(delta_out, (const char *)enc, enc_len);
    for (size_t i = 0; i < d.n_gone; i++) edge_free(d.gone[i]);
    edge_free(d.gone);
    edge_free(enc);
    edge_crdt_destroy(d.set);
    edge_crdt_destroy(d.delta);
    elems_free(&now);
    elems_free(&was);
    return rv;
}

int edge__crdt_set_merge(sqlite3 *db, const struct edge__tinfo *t, int col, const void *pk, size_t pklen,
                         const uint8_t *delta, size_t len)
{
    struct edge_crdt *set = NULL, *in = NULL;
    bool found = false;
    int rv = edge_crdt_decode(delta, len, &in);
    if (rv == EDGE_OK && edge_crdt_type_of(in) != EDGE_CRDT_ORSET) rv = EDGE_ECORRUPT;
    if (rv == EDGE_OK) rv = cell_load(db, t, col, pk, pklen, &set, &found);
    if (rv == EDGE_OK) rv = edge_crdt_merge(set, in, NULL);
    if (rv == EDGE_OK) rv = cell_save(db, t, col, pk, pklen, set);
    edge_crdt_destroy(set);
    edge_crdt_destroy(in);
    return rv;
}
