/* SPDX-License-Identifier: MIT */
/* Latency trace of one change's path (commit, peer link, apply, feed, realtime loop,
 * socket), for bench/realtime.sh --trace: with EDGE_TRACE_FILE set, each hop appends
 * "<hop> <origin> <seq> <CLOCK_MONOTONIC ns> <pid>\n" to that file (one write each, so
 * two nodes can share it). Off (the default), a hop costs one load of a flag. Never for
 * production: it writes a line per entry per hop. */
#ifndef EDGE_REPL_TRACE_H
#define EDGE_REPL_TRACE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

extern atomic_int edge__trace_fd; /* -1: off (set once, at the first edge_repl_trace_init) */

void edge_repl_trace_init(void);
uint64_t edge_repl_trace_now_ns(void);
/* Record hop for (origin, seq) at ns (0: now). */
void edge_repl_trace_at(const char *hop, const char *origin, uint64_t seq, uint64_t ns);

static inline bool edge_repl_trace_on(void)
{
    return atomic_load_explicit(&edge__trace_fd, memory_order_relaxed) >= 0;
}

#endif
