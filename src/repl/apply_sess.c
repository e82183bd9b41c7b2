/* SPDX-License-Identifier: MIT */
/* Applying remote entries: the rows of _edge_sessions merge as whole records, by the
 * record's version vector (its `vv` column, a JSON object region -> writes counted), not
 * column by column (docs/sessions.md, "Partitions").
 *
 * With sessions.partition_mode: available, every write of a session counts one more for
 * the region that made it, so a record's vv names exactly the writes it includes. When a
 * row op meets the row here:
 *  - the same vv: the writes are the same (or a touch of the home, which keeps vv): the
 *    usual per-column merge (apply_merge.c);
 *  - one vv covers the other: the covering record is the newer one and is taken whole
 *    (an older record arriving late is ignored);
 *  - neither covers the other (writes taken on both sides of a partition): the record
 *    whose write stamp (the stamp of its vv column: hlc, then origin, then seq) is
 *    greater wins whole, and its vv becomes the pointwise maximum of both, so that the
 *    merged record covers both and the result is the same in every region whatever order
 *    they heard the two in. The loser is counted (session_merges, and a conflict of kind
 *    'session' in _edge_conflicts with the loser's stamp).
 * With the default mode vv stays {} and everything is the first case: per-column merge
 * as before. */
#include "repl/apply_int.h"

#include <jansson.h>
#include <string.h>

#include "core/alloc.h"

static int col_index(const struct edge__tinfo *t, const char *name)
{
    for (int i = 0; i < t->pk.ncols; i++) {
        if (strcmp(t->cols[i], name) == 0) return i;
    }
    return -1;
}

/* An encoded text value holding a JSON object; NULL otherwise. */
static json_t *vv_parse_text(const char *s, size_t n)
{
    json_t *o = s != NULL ? json_loadb(s, n, 0, NULL) : NULL;
    if (!json_is_object(o)) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *vv_parse_value(const uint8_t *v, size_t len)
{
    if (v == NULL) return NULL;
    struct edge__rd r = {v, len, 0};
    uint8_t ty;
    const char *s;
    size_t n;
    if (edge__repl_get_u8(&r, &ty) != EDGE_OK || ty != 3 || edge__repl_get_str(&r, &s, &n) != EDGE_OK) return NULL;
    return vv_parse_text(s, n);
}

/* a >= b, pointwise */
static bool covers(json_t *a, json_t *b)
{
    const char *k;
    json_t *v;
    json_object_foreach(b, k, v) {
        if (json_integer_value(json_object_get(a, k)) < json_integer_value(v)) return false;
    }
    return true;
}

void edge__repl_sess_order_free(struct edge__sess_order *o) { edge_buf_free(&o->merged); }

int edge__repl_sess_order(struct edge__repl_actx *x, const struct edge__tinfo *t, const void *pk, size_t pklen,
                          const uint8_t *const *in_v, const size_t *in_l, const struct edge__stamp *in_s,
                          const struct edge__rowmeta *m, struct edge__sess_order *out)
{
    memset(out, 0, sizeof(*out));
    edge_buf_init(&out->merged, 1 << 20);
    out->kind = EDGE__SESS_SAME;
    out->vv_col = -1;
    if (strcmp(t->name, "_edge_sessions") != 0) return EDGE_OK;
    int vc = col_index(t, "vv");
    if (vc < 0 || in_v[vc] == NULL) return EDGE_OK;
    out->vv_col = vc;
    json_t *in = vv_parse_value(in_v[vc], in_l[vc]);
    if (in == NULL) return EDGE_OK; /* not ours to judge: the per-column merge */
    sqlite3_stmt *st = NULL;
    int rv = edge__repl_by_pk(x->db, "SELECT vv FROM ", t, pk, pklen, &st);
    json_t *cur = NULL;
    if (rv == EDGE_OK && sqlite3_step(st) == SQLITE_ROW) {
        cur = vv_parse_text((const char *)sqlite3_column_text(st, 0), (size_t)sqlite3_column_bytes(st, 0));
    }
    edge__repl_done(st);
    if (rv != EDGE_OK || cur == NULL) {
        json_decref(in);
        return rv;
    }
    bool in_ge = covers(in, cur), cur_ge = covers(cur, in);
    if (in_ge && cur_ge) {
        out->kind = EDGE__SESS_SAME;
    } else if (in_ge) {
        out->kind = EDGE__SESS_IN_NEWER;
    } else if (cur_ge) {
        out->kind = EDGE__SESS_CUR_NEWER;
    } else {
        out->kind = edge__stamp_cmp(&in_s[vc], &m->cols[vc]) > 0 ? EDGE__SESS_CONCURRENT_IN : EDGE__SESS_CONCURRENT_CUR;
        /* the pointwise maximum, keys sorted so every region writes the same text */
        json_t *mx = json_deep_copy(cur);
        const char *k;
        json_t *v;
        json_object_foreach(in, k, v) {
            if (json_integer_value(v) > json_integer_value(json_object_get(mx, k))) {
                json_object_set_new(mx, k, json_integer(json_integer_value(v)));
            }
        }
        char *text = mx ? json_dumps(mx, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        rv = text == NULL ? EDGE_ENOMEM : edge_buf_putc(&out->merged, 3);
        if (rv == EDGE_OK) rv = edge__repl_put_str(&out->merged, text, strlen(text));
        free(text);
        json_decref(mx);
    }
    json_decref(in);
    json_decref(cur);
    return rv;
}
