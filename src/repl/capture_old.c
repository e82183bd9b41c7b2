/* SPDX-License-Identifier: MIT */
/* The old row image of the change log (EDGE_REPL_OP_OLD, repl_int.h): written by the
 * capture before an update or a delete, from the preupdate hook's old values, so every
 * region reads the origin's image of the row before the change, whatever it held
 * itself; skipped by apply. */
#include "repl/repl_int.h"

#include <string.h>

int edge__repl_skip_old(struct edge__rd *r)
{
    uint64_t n;
    if (edge__repl_get_varint(r, &n) != EDGE_OK || n > 32767) return EDGE_ECORRUPT;
    for (uint64_t i = 0; i < n; i++) {
        const char *s;
        size_t sl;
        if (edge__repl_get_str(r, &s, &sl) != EDGE_OK) return EDGE_ECORRUPT;
    }
    for (uint64_t i = 0; i < n; i++) {
        if (edge__repl_skip_value(r) != EDGE_OK) return EDGE_ECORRUPT;
    }
    return EDGE_OK;
}

/* The origin's image of the row before an update or a delete, for the change feed's
 * "old": every column the stored record has (a column added after the row was written
 * reads as unknown here and is left out), none at all beyond EDGE_REPL_OLD_MAX bytes of
 * values, so one wide row cannot double an entry's size unbounded. */
int edge__repl_put_old(struct edge_buf *body, const struct edge__tinfo *ti, const char *table, size_t tl,
                        struct edge__rd oldset, uint64_t ncols, uint64_t *n_ops)
{
    if (strncmp(table, "_edge_", 6) == 0) return EDGE_OK; /* sessions: no subscriber reads them */
    struct edge__rd r = oldset;
    size_t bytes = 0;
    uint64_t n = 0;
    for (uint64_t k = 0; k < ncols; k++) {
        size_t start = r.off;
        bool unknown = r.off < r.len && r.p[r.off] == EDGE__RAW_UNKNOWN;
        if (edge__repl_raw_skip(&r) != EDGE_OK) return EDGE_ECORRUPT;
        if (!unknown) {
            bytes += r.off - start;
            n++;
        }
    }
    if (bytes > EDGE_REPL_OLD_MAX) return EDGE_OK;
    int rv = edge__repl_put_str(body, table, tl);
    if (rv == EDGE_OK) rv = edge_buf_putc(body, EDGE_REPL_OP_OLD);
    if (rv == EDGE_OK) rv = edge__uvarint_put(body, n);
    r = oldset;
    for (uint64_t k = 0; k < ncols && rv == EDGE_OK; k++) {
        bool unknown = r.p[r.off] == EDGE__RAW_UNKNOWN;
        if (edge__repl_raw_skip(&r) != EDGE_OK) return EDGE_ECORRUPT;
        if (!unknown) rv = edge__repl_put_str(body, ti->cols[k], strlen(ti->cols[k]));
    }
    r = oldset;
    for (uint64_t k = 0; k < ncols && rv == EDGE_OK; k++) {
        size_t start = r.off;
        bool unknown = r.p[r.off] == EDGE__RAW_UNKNOWN;
        if (edge__repl_raw_skip(&r) != EDGE_OK) return EDGE_ECORRUPT;
        if (!unknown) rv = edge_buf_append(body, r.p + start, r.off - start);
    }
    if (rv == EDGE_OK) (*n_ops)++;
    return rv;
}

