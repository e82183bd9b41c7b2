/* SPDX-License-Identifier: MIT */
/* Tombstone collection: a deleted row's metadata (_edge_rows with deleted = 1, its
 * stamps and its kept values) is dropped once no entry that could still arrive here
 * needs it to be merged right.
 *
 * DESIGN (the argument is in docs/internals/replication.md, "Tombstones"). The node
 * works in epochs. An epoch starts with V, a copy of this node's version vector. It is
 * safe once, for every other region R:
 *   (a) R acknowledged a version vector >= V (R has applied everything in V), and
 *   (b) this node has applied R's own entries up to the seq R reported for itself in
 *       that acknowledgement (R's entries beyond it were written after R held V).
 * Then every entry that can still arrive was written by a region that held V, so it
 * covers (causally) every stamp in V: a tombstone whose stamps are all in V decides
 * nothing any more, and a row with no metadata merges the same way. Safe epochs
 * collect those tombstones in bounded batches on the writer, then a new epoch starts.
 * The greatest stamp collected is kept as the horizon (_edge_gc): a write to a row with
 * no metadata stamped at or below it can only be an old write that the collected
 * tombstone would have beaten, and loses (apply_merge.c). A region that does not
 * acknowledge (unreachable, stopped) keeps every epoch from becoming safe. */
#ifndef EDGE_REPL_TOMB_H
#define EDGE_REPL_TOMB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "core/vclock.h"

struct edge_repl_state;
struct edge_repl_tomb;

/* Tombstones examined (and at most dropped) by one writer job. */
#define EDGE_REPL_TOMB_BATCH 2000

int edge_repl_tomb_new(struct edge_repl_tomb **out);
void edge_repl_tomb_free(struct edge_repl_tomb *t);

/* One step, from the node's GC timer (replication.tombstone_gc_interval_ms): advance
 * the epoch with the peers' acknowledgements and queue one writer job that counts the
 * tombstones and, when the epoch is safe, collects a batch (more batches follow at once
 * while there are). Does nothing while a job is queued. Any thread, one at a time. */
void edge_repl_tomb_tick(struct edge_repl_state *st);

struct edge_repl_tomb_info {
    uint64_t tombstones;      /* in _edge_rows (as of the last step; /metrics reads the count itself) */
    uint64_t collected;       /* dropped since start */
    uint64_t horizon_hlc;     /* greatest stamp ever collected (persisted) */
    uint64_t epochs;          /* epochs completed since start */
    int64_t waiting_ms;       /* how long the current epoch has waited (0: none) */
    char waiting_for[72];     /* the region the epoch waits for, "" if none */
};
void edge_repl_tomb_info(struct edge_repl_state *st, struct edge_repl_tomb_info *out);

/* One collection pass over db (not in a transaction; runs its own): from the cursor on,
 * at most max tombstones are examined; those whose stamps (existence and every column)
 * are all covered by upto are deleted, and the horizon in _edge_gc is raised to the
 * greatest stamp deleted. The cursor (after_tbl/after_pk) moves past the last row
 * examined; done is set when the end of the tombstones was reached. Also counts the
 * tombstones left (edge_repl_tomb_count). Exposed for the unit tests. */
struct edge_repl_tomb_pass {
    const struct edge_vclock *upto;
    size_t max;
    char *after_tbl;     /* owned; NULL: from the start */
    uint8_t *after_pk;   /* owned */
    size_t after_pk_len;
    uint64_t examined, collected, left, max_hlc;
    bool done;
};
int edge_repl_tomb_collect(sqlite3 *db, struct edge_repl_tomb_pass *p);
void edge_repl_tomb_pass_free(struct edge_repl_tomb_pass *p);

/* The number of tombstones in db: a count kept in _edge_gc by every change of
 * _edge_rows, in the same transaction (no walk of the tombstones). 0 when no table. */
uint64_t edge_repl_tomb_count(sqlite3 *db);

/* The horizon stored in db (0 when none or no table). */
uint64_t edge_repl_tomb_horizon(sqlite3 *db);

/* Are all the stamps of a tombstone (existence origin/seq and the cols blob of
 * _edge_rows) covered by v? Unreadable stamps count as not covered. */
bool edge_repl_tomb_covered(const struct edge_vclock *v, const char *origin, uint64_t seq, const void *cols,
                            size_t cols_len, uint64_t *out_max_hlc);

#endif
