/* SPDX-License-Identifier: MIT */
/* Log maintenance and seeding: compaction of acknowledged log entries, consistent
 * snapshots of the database (SQLite backup API), and seeding a region's empty or
 * stale database from a peer's snapshot before the node starts. */
#ifndef EDGE_REPL_COMPACT_H
#define EDGE_REPL_COMPACT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/vclock.h"
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

/* Before the node opens its database (blocking, talks to peers over HTTP; both do
 * nothing on a single node). edge_repl_behind_the_logs sets an existing database aside
 * (its path into aside, "" if not) when it is behind what the other regions can still
 * send; edge_repl_set_aside does it unconditionally (a region found behind while it ran).
 * edge_repl_seed then streams a peer's snapshot in when there is no database: a new
 * region (must false) tries each peer twice and else starts empty; must true tries
 * until a peer gives one or cancelled (polled, may be NULL) returns true (EDGE_ECLOSED). */
bool edge_repl_behind_the_logs(struct edge_repl_state *st, char *aside, size_t aside_len);
int edge_repl_set_aside(struct edge_repl_state *st, char *aside, size_t aside_len);
int edge_repl_seed(struct edge_repl_state *st, bool must, bool (*cancelled)(void *ud), void *ud);
/* A peer edge_repl_seed may copy: its index in conf->regions, the entries its /v1/status
 * version vector holds, and whether that status came. */
struct edge__seed_peer {
    size_t region;
    uint64_t entries;
    bool known;
};
/* The peers into out (conf->n_regions places) in the order edge_repl_seed asks them for a
 * snapshot: by entries, most first, so a peer that is itself behind (stuck, partitioned,
 * just re-seeded) gives its copy only when no better one answers; those whose status cannot
 * be had within 2 s (down, stopped, seeding) last, in configuration order. Returns how many.
 * Blocking, one status request per peer. */
size_t edge__repl_seed_order(const struct edge_repl_state *st, struct edge__seed_peer *out);
/* While running (blocking, HTTP to every peer's /v1/status): true when no peer that
 * answers can catch this node up any more, so only a snapshot can (logged). */
bool edge_repl_behind_now(struct edge_repl_state *st);
/* The rule of edge_repl_behind_now, on what the n peers that answered hold: floors[d]
 * is peer ids[d]'s log floor per origin (entries up to it are compacted away), local
 * this node's VV. A link sends every origin the node lacks, or nothing when the next
 * entry of one of them is gone from its log (repl/batch.c). So a peer can catch the node
 * up only when its log still starts at or below what the node holds for every other
 * origin; behind when no peer can (one peer short of origin a and the other of origin b
 * leave the node as stuck as both short of a). A peer short of nothing helps only if it
 * holds something the node lacks: vvs[d] is peer d's VV (vvs NULL: not known, every
 * such peer counts as able to help). Behind needs at least one peer short of an origin;
 * false when n is 0. why (may be cut) names what each peer lacks. */
bool edge_repl_behind_decide(const char *self, const struct edge_vclock *local, const struct edge_vclock *floors,
                             const struct edge_vclock *vvs, const char *const *ids, int n, char *why,
                             size_t why_len);
/* After a re-seed, on the writer's connection before the writer starts (capture
 * attached): apply this region's own entries that the set-aside database at aside holds
 * beyond the new database's VV (acknowledged here, never received by a peer), in HLC
 * order, with the entries of other regions they depend on that the old copy holds; an
 * own entry whose dependency neither copy holds gets its deps narrowed to the new VV.
 * Then merge the VV into st. Only a gap in this region's own sequence leaves entries in
 * the old file (logged). */
int edge_repl_reapply_own(struct edge_repl_state *st, sqlite3 *wdb, const char *aside);

#endif
