/* SPDX-License-Identifier: MIT */
/* The change feed's internals, shared by feed.c (dispatch, reading the log, decoding) and
 * feed_conflicts.c (attaching recorded conflicts to the entries of a pass). */
#ifndef EDGE_REPL_FEED_INT_H
#define EDGE_REPL_FEED_INT_H

#include <string.h>

#include "core/alloc.h"
#include "repl/feed.h"

/* An entry read from the log, decoded into ops. */
struct edge__feed_pending {
    char origin[EDGE_VCLOCK_REGION_MAX + 1];
    uint64_t seq, hlc;
    int consistency;
    uint8_t *payload;
    size_t len;
    struct edge_feed_op *ops;
    size_t n_ops;
};

static inline uint8_t *edge__feed_dup_blob(const void *p, size_t n)
{
    uint8_t *d = edge_malloc(n ? n : 1);
    if (d != NULL && n > 0) memcpy(d, p, n);
    return d;
}

/* Conflict rows the ops of a pass point to: valid until edge__feed_conflicts_free. */
struct edge__feed_conflicts {
    struct edge__feed_conflict_row *rows;
    size_t n;
};

/* Attach to the ops of pend[0..np) (decoded, in delivery order: sorted by hlc, origin,
 * seq) the conflicts this node recorded between two versions of a row, on the op of the
 * version delivered second: for each conflict, the later of the two in pend, or the one
 * in pend when the other is covered by `before` (the reader's position before pend[0]);
 * a conflict whose other version comes after pend is attached when that version is read.
 * So a reader, live or catching up at any region, gets each conflict its region recorded
 * once, on whichever version of the pair reached it last. Best effort: a failed read
 * attaches nothing. */
void edge__feed_conflicts_attach(sqlite3 *db, const struct edge_vclock *before, struct edge__feed_pending *pend,
                                 size_t np, struct edge__feed_conflicts *out);
void edge__feed_conflicts_free(struct edge__feed_conflicts *c);

#endif
