/* SPDX-License-Identifier: MIT */
/* Log maintenance and seeding: compaction of acknowledged log entries, consistent
 * snapshots of the database (SQLite backup API), and seeding a region's empty or
 * stale database from a peer's snapshot before the node starts. */
#ifndef EDGE_REPL_COMPACT_H
#define EDGE_REPL_COMPACT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "repl/state.h"

/* Queue a compaction on the writer: per origin, drop the log entries every peer has
 * acknowledged, keeping the last log_keep (nothing when no peer is configured or
 * nothing is old enough); and keep _edge_conflicts within replication.conflicts_keep
 * and conflicts_max_age, oldest first, a bounded number of rows per call. Any thread. */
void edge_repl_compact(struct edge_repl_state *st);

/* Blocking: copy the database at db_path into a temporary file next to it, as one
 * self-contained SQLite file (no WAL), in one backup step under one read lock; the file
 * is unlinked at once and *out_fd (the caller's to close) is all that holds it. Memory
 * stays flat (SQLite's page cache); the disk needs room for one more copy. *out_size and
 * sha256_hex (lower-case hex) describe the copy. EDGE_OK, or an error with err set. */
int edge_repl_snapshot_take(const char *db_path, int *out_fd, uint64_t *out_size, char sha256_hex[65], char *err,
                            size_t errlen);

/* Before the node opens its database (blocking, talks to peers over HTTP):
 * edge_repl_behind_the_logs sets an existing database aside when it is behind what the
 * other regions can still send; edge_repl_seed then copies a peer's snapshot when
 * there is no database. Both do nothing on a single node. */
bool edge_repl_behind_the_logs(struct edge_repl_state *st);
void edge_repl_seed(struct edge_repl_state *st);

#endif
