/* SPDX-License-Identifier: MIT */
/* /v1/crdt answers that read: the JSON form of an object, GET of one, the list, and the
 * merge statistics. */
#include <inttypes.h>
#include <string.h>

#include "api/crdt_http_int.h"
#include "core/alloc.h"
#include "store/crdt_store.h"

/* ---- JSON writing ---- */

static int http_elem_cb(void *ud, const uint8_t *elem, size_t len)
{
    struct edge_buf *b = ud;
    int rv = EDGE_OK;
    if (b->len > 0 && b->data[b->len - 1] != '[') {
        rv = edge_buf_putc(b, ',');
    }
    return rv == EDGE_OK ? edge_buf_append(b, elem, len) : rv;
}

static int http_put_value(struct edge_buf *b, const struct edge_crdt *c)
{
    switch (edge_crdt_type_of(c)) {
    case EDGE_CRDT_GCOUNTER: {
        uint64_t v = 0;
        (void)edge_crdt_value_u64(c, &v);
        return edge_buf_printf(b, "%" PRIu64, v);
    }
    case EDGE_CRDT_PNCOUNTER: {
        int64_t v = 0;
        (void)edge_crdt_value_i64(c, &v);
        return edge_buf_printf(b, "%" PRId64, v);
    }
    case EDGE_CRDT_ORSET: {
        int rv = edge_buf_putc(b, '[');
        if (rv == EDGE_OK) {
            rv = edge_crdt_foreach(c, http_elem_cb, b);
        }
        return rv == EDGE_OK ? edge_buf_putc(b, ']') : rv;
    }
    case EDGE_CRDT_LWW: {
        const uint8_t *v;
        size_t len;
        if (edge_crdt_get(c, &v, &len, NULL, NULL) != EDGE_OK) {
            return edge_buf_puts(b, "null");
        }
        return edge_buf_append(b, v, len);
    }
    }
    return EDGE_EINVAL;
}

static int http_vclock_cb(void *ud, const char *region, uint64_t n)
{
    struct edge_buf *b = ud;
    int rv = EDGE_OK;
    if (b->data[b->len - 1] != '{') {
        rv = edge_buf_putc(b, ',');
    }
    if (rv == EDGE_OK) {
        rv = edge_buf_json_cstr(b, region);
    }
    return rv == EDGE_OK ? edge_buf_printf(b, ":%" PRIu64, n) : rv;
}

/* {"name","type","value"} plus, when full, "vclock", "conflicts" and "state". */
int edge__crdt_put_object(struct edge_buf *b, const char *name, const struct edge_crdt *c, int full,
                           uint64_t conflicts)
{
    uint8_t *state = NULL;
    size_t len = 0;
    int rv = edge_buf_puts(b, "{\"name\":");
    if (rv == EDGE_OK) {
        rv = edge_buf_json_cstr(b, name);
    }
    if (rv == EDGE_OK) {
        rv = edge_buf_printf(b, ",\"type\":\"%s\",\"value\":", edge_crdt_type_name(edge_crdt_type_of(c)));
    }
    if (rv == EDGE_OK) {
        rv = http_put_value(b, c);
    }
    if (rv == EDGE_OK && full) {
        rv = edge_buf_puts(b, ",\"vclock\":{");
        if (rv == EDGE_OK) {
            rv = edge_crdt_vclock_foreach(c, http_vclock_cb, b);
        }
        if (rv == EDGE_OK) {
            rv = edge_buf_printf(b, "},\"conflicts\":%" PRIu64 ",\"state\":\"", conflicts);
        }
        if (rv == EDGE_OK) {
            rv = edge_crdt_encode(c, &state, &len);
        }
        if (rv == EDGE_OK) {
            rv = edge_buf_base64(b, state, len);
        }
        if (rv == EDGE_OK) {
            rv = edge_buf_putc(b, '"');
        }
    }
    if (rv == EDGE_OK) {
        rv = edge_buf_putc(b, '}');
    }
    edge_free(state);
    return rv;
}

/* ---- merge statistics ---- */

struct stats_walk {
    struct edge_buf *b;
    uint64_t merges, concurrent;
    int n;
};

static int http_stat_cb(void *ud, const struct edge_crdt_merge_stat *s)
{
    struct stats_walk *w = ud;
    int rv = w->n++ > 0 ? edge_buf_putc(w->b, ',') : EDGE_OK;
    if (rv == EDGE_OK) {
        rv = edge_buf_json_cstr(w->b, s->region);
    }
    if (rv == EDGE_OK) {
        rv = edge_buf_printf(w->b, ":{\"merges\":%" PRIu64 ",\"concurrent\":%" PRIu64 "}", s->merges, s->concurrent);
    }
    w->merges += s->merges;
    w->concurrent += s->concurrent;
    return rv;
}

/* ,"merges":N,"concurrent":N,"regions":{"r":{"merges":N,"concurrent":N},...} for name:
 * the updates of other regions merged here, and how many combined concurrent updates. */
static int http_put_stats(struct hreq *r, struct edge_buf *b, const char *name)
{
    struct edge_buf regions;
    struct stats_walk w = {&regions, 0, 0, 0};
    edge_buf_init(&regions, b->max);
    int rv = edge_crdt_store_merges(r->db, name, http_stat_cb, &w);
    if (rv == EDGE_OK) {
        rv = edge_buf_printf(b, ",\"merges\":%" PRIu64 ",\"concurrent\":%" PRIu64 ",\"regions\":{", w.merges,
                             w.concurrent);
    }
    if (rv == EDGE_OK) {
        rv = edge_buf_append(b, regions.data ? regions.data : "", regions.len);
    }
    if (rv == EDGE_OK) {
        rv = edge_buf_putc(b, '}');
    }
    edge_buf_free(&regions);
    return rv;
}

/* The whole object, with its merge statistics. */
int edge__crdt_put_full(struct hreq *r, const char *name, const struct edge_crdt *c, uint64_t conflicts)
{
    int rv = edge__crdt_put_object(r->b, name, c, 1, conflicts);
    if (rv == EDGE_OK) {
        r->b->len--; /* reopen the object for its statistics */
        rv = http_put_stats(r, r->b, name);
    }
    return rv == EDGE_OK ? edge_buf_putc(r->b, '}') : rv;
}

/* ---- handlers ---- */

int edge__crdt_get(struct hreq *r, const char *name)
{
    struct edge_crdt_row row = {0};
    struct edge_crdt *c = NULL;
    int rv = edge_crdt_store_load(r->db, name, &row);
    if (rv == EDGE_ENOTFOUND) {
        return edge__crdt_fail(r, 404, "CRDT_NOT_FOUND", "no such object");
    }
    if (rv == EDGE_OK && (rv = edge_crdt_decode(row.state, row.state_len, &c)) == EDGE_ECORRUPT) {
        rv = edge__crdt_fail(r, 500, "CRDT_CORRUPT", "stored state is corrupt");
    } else if (rv == EDGE_OK) {
        r->status = 200;
        rv = edge__crdt_put_full(r, name, c, row.conflicts);
    }
    edge_crdt_destroy(c);
    edge_crdt_store_row_free(&row);
    return rv;
}

/* GET /v1/crdt/stats: every object's merge statistics. */
static int http_stats_cb(void *ud, const struct edge_crdt_row *row)
{
    struct hreq *r = ud;
    int rv = r->b->data[r->b->len - 1] != '[' ? edge_buf_putc(r->b, ',') : EDGE_OK;
    if (rv == EDGE_OK) {
        rv = edge_buf_puts(r->b, "{\"name\":");
    }
    if (rv == EDGE_OK) {
        rv = edge_buf_json_cstr(r->b, row->name);
    }
    if (rv == EDGE_OK) {
        rv = edge_buf_puts(r->b, ",\"type\":");
    }
    if (rv == EDGE_OK) {
        rv = edge_buf_json_cstr(r->b, row->type);
    }
    if (rv == EDGE_OK) {
        rv = edge_buf_printf(r->b, ",\"conflicts\":%" PRIu64, row->conflicts);
    }
    if (rv == EDGE_OK) {
        rv = http_put_stats(r, r->b, row->name);
    }
    return rv == EDGE_OK ? edge_buf_putc(r->b, '}') : rv;
}

int edge__crdt_stats(struct hreq *r)
{
    int rv = edge_buf_puts(r->b, "{\"objects\":[");
    if (rv == EDGE_OK) {
        rv = edge_crdt_store_list(r->db, http_stats_cb, r);
    }
    if (rv == EDGE_OK) {
        rv = edge_buf_puts(r->b, "]}");
    }
    r->status = 200;
    return rv;
}

static int http_list_cb(void *ud, const struct edge_crdt_row *row)
{
    struct edge_buf *b = ud;
    struct edge_crdt *c = NULL;
    int rv = EDGE_OK;
    if (b->data[b->len - 1] != '[') {
        rv = edge_buf_putc(b, ',');
    }
    if (rv != EDGE_OK) {
        return rv;
    }
    if (edge_crdt_decode(row->state, row->state_len, &c) == EDGE_OK) {
        rv = edge__crdt_put_object(b, row->name, c, 0, 0);
    } else {
        /* one bad row should not hide the others */
        rv = edge_buf_puts(b, "{\"name\":");
        if (rv == EDGE_OK) {
            rv = edge_buf_json_cstr(b, row->name);
        }
        if (rv == EDGE_OK) {
            rv = edge_buf_puts(b, ",\"type\":");
        }
        if (rv == EDGE_OK) {
            rv = edge_buf_json_cstr(b, row->type);
        }
        if (rv == EDGE_OK) {
            rv = edge_buf_puts(b, ",\"value\":null}");
        }
    }
    edge_crdt_destroy(c);
    return rv;
}

int edge__crdt_list(struct hreq *r)
{
    int rv = edge_buf_puts(r->b, "{\"objects\":[");
    if (rv == EDGE_OK) {
        rv = edge_crdt_store_list(r->db, http_list_cb, r->b);
    }
    if (rv == EDGE_OK) {
        rv = edge_buf_puts(r->b, "]}");
    }
    r->status = 200;
    return rv;
}
