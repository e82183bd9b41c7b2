/* SPDX-License-Identifier: MIT */
/* Injectable time (raft_io, SQLite VFS xCurrentTimeInt64) and the hybrid logical clock
 * that stamps every write: 48 bits of wall-clock milliseconds, 16 bits of counter. */
#ifndef EDGE_CORE_CLOCK_H
#define EDGE_CORE_CLOCK_H

#include <stdint.h>

struct edge_clock {
    int version; /* 1 */
    void *ud;
    uint64_t (*mono_ns)(void *ud); /* monotonic, for timeouts */
    uint64_t (*wall_ms)(void *ud); /* unix epoch milliseconds, for HLC and TTLs */
};

/* The process clock (CLOCK_MONOTONIC / CLOCK_REALTIME). Static storage. */
const struct edge_clock *edge_clock_system(void);
/* The process wall clock (unix ms) that stamps writes: CLOCK_REALTIME plus the offset
 * below. Any thread. */
uint64_t edge_wall_ms(void);
/* Shift the process wall clock (tests of clock skew: `serve --clock-offset-ms`). */
void edge_clock_set_wall_offset_ms(int64_t ms);

/* A manual clock for deterministic tests: starts at the given values, moves only
 * when told. */
struct edge_clock_manual {
    struct edge_clock clock;
    uint64_t mono_ns;
    uint64_t wall_ms;
};
void edge_clock_manual_init(struct edge_clock_manual *m, uint64_t wall_ms);
void edge_clock_manual_advance(struct edge_clock_manual *m, uint64_t ms);

static inline uint64_t edge_clock_mono_ms(const struct edge_clock *c)
{
    return c->mono_ns(c->ud) / 1000000u;
}

/* Hybrid logical clock (Kulkarni et al., "Logical Physical Clocks", 2014). */
typedef uint64_t edge_hlc_t;
#define EDGE_HLC_MS(h) ((h) >> 16)
#define EDGE_HLC_CTR(h) ((h)&0xffffu)
#define EDGE_HLC_MAKE(ms, ctr) (((uint64_t)(ms) << 16) | ((uint64_t)(ctr)&0xffffu))

struct edge_hlc {
    const struct edge_clock *clock; /* borrowed */
    edge_hlc_t last;
};

void edge_hlc_init(struct edge_hlc *h, const struct edge_clock *clock);
/* Timestamp for a local event: strictly greater than every earlier result. */
edge_hlc_t edge_hlc_now(struct edge_hlc *h);
/* Merge a remote timestamp on receipt; returns the new local time (> both). */
edge_hlc_t edge_hlc_update(struct edge_hlc *h, edge_hlc_t remote);

#endif
