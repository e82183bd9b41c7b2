/* SPDX-License-Identifier: MIT */
/* Reading the local log for an outbound link: the version vector as the link may name
 * it on the wire, and the next ENTRIES batch a peer lacks. On the link's own read-only
 * connection; err describes any failure. */
#ifndef EDGE_REPL_BATCH_H
#define EDGE_REPL_BATCH_H

#include <sqlite3.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/vclock.h"

/* The version vector (_edge_vv) into vv; rows with a region the protocol cannot carry
 * are skipped. */
int edge_repl_log_vv(sqlite3 *db, struct edge_vclock *vv, char *err, size_t errlen);

/* Build the next ENTRIES message in out from the log entries sent lacks (at most
 * max_entries, about max_bytes), in HLC order across origins and seq order within
 * one, all from one read transaction, and advance sent past them. *out_n = 0 when
 * nothing is pending. EDGE_ENOTFOUND when the next entry the peer needs is no longer
 * in the log (compacted): the peer needs a snapshot. */
int edge_repl_batch_build(sqlite3 *db, struct edge_vclock *sent, int max_entries, size_t max_bytes,
                          struct edge_buf *out, size_t *out_n, char *err, size_t errlen);

#endif
