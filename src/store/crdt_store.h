/* SPDX-License-Identifier: MIT */
/* Persistence of CRDT objects in the node's SQLite file: one row per object in
 * `_edge_crdt` (encoded full state, type, local conflict count), and merge statistics
 * in `_edge_crdt_merges`. The history of updates is the replication log's (each update
 * is a delta in its entry), not a table of its own. The store handles opaque encoded states, so it
 * does not depend on the CRDT library; callers encode/decode with edgelite/crdt.h.
 * Every function takes a caller-owned connection, runs on the thread that owns it, and
 * never begins or commits a transaction: callers wrap save() in their own. */
#ifndef EDGE_STORE_CRDT_STORE_H
#define EDGE_STORE_CRDT_STORE_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "edgelite/errors.h"

struct edge_crdt_row {
    char *name;     /* object name */
    char *type;     /* "g-counter", ... */
    uint8_t *state; /* encoded full state (edge_crdt_encode) */
    size_t state_len;
    uint64_t conflicts; /* concurrent merges seen by this node */
    int64_t updated_ms; /* wall clock of the last change */
};

/* Create the tables if missing. EDGE_OK or EDGE_ESTORE. */
int edge_crdt_store_init(sqlite3 *db);
/* The same, cheap when they exist (a cached statement probe): for every request. */
int edge_crdt_store_ensure(sqlite3 *db);
/* Load the row of name (borrowed) into *out, whose fields become caller-owned; release
 * with edge_crdt_store_row_free. EDGE_OK, EDGE_ENOTFOUND, EDGE_ENOMEM, EDGE_ESTORE. */
int edge_crdt_store_load(sqlite3 *db, const char *name, struct edge_crdt_row *out);
/* Insert or replace the row (borrowed) inside the caller's transaction. EDGE_OK,
 * EDGE_ETOOBIG or EDGE_ESTORE. */
int edge_crdt_store_save(sqlite3 *db, const struct edge_crdt_row *row);
/* Called per row in name order; row borrowed for the call only; a non-zero return stops
 * the walk and is returned. */
typedef int (*edge_crdt_store_row_cb)(void *ud, const struct edge_crdt_row *row);
/* Walk every object. EDGE_OK, EDGE_ESTORE, or the callback's value. */
int edge_crdt_store_list(sqlite3 *db, edge_crdt_store_row_cb cb, void *ud);
/* Merges of updates from other regions, per object and region: how many, and how many
 * of them combined concurrent updates (neither side had seen the other's). */
struct edge_crdt_merge_stat {
    const char *name;
    const char *region;
    uint64_t merges;
    uint64_t concurrent;
};
/* Count one merge of name from region (borrowed), concurrent or not, inside the
 * caller's transaction. EDGE_OK or EDGE_ESTORE. */
int edge_crdt_store_note_merge(sqlite3 *db, const char *name, const char *region, int concurrent);
typedef int (*edge_crdt_store_merge_cb)(void *ud, const struct edge_crdt_merge_stat *s);
/* Walk the merge counts of name (every object when NULL) in (name, region) order; s is
 * borrowed for the call. EDGE_OK, EDGE_ESTORE, or the callback's non-zero value. */
int edge_crdt_store_merges(sqlite3 *db, const char *name, edge_crdt_store_merge_cb cb, void *ud);
/* Free the fields of a loaded row; the struct itself is caller storage. */
void edge_crdt_store_row_free(struct edge_crdt_row *row);

#endif
