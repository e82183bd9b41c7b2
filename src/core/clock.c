/* SPDX-License-Identifier: MIT */
#include "core/clock.h"

#include <stdatomic.h>
#include <time.h>

static _Atomic int64_t wall_offset_ms;

void edge_clock_set_wall_offset_ms(int64_t ms) { atomic_store(&wall_offset_ms, ms); }

uint64_t edge_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t ms = (int64_t)ts.tv_sec * 1000 + (int64_t)ts.tv_nsec / 1000000 + atomic_load(&wall_offset_ms);
    return ms > 0 ? (uint64_t)ms : 0;
}

static uint64_t sys_mono_ns(void *ud)
{
    (void)ud;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t sys_wall_ms(void *ud)
{
    (void)ud;
    return edge_wall_ms();
}

static const struct edge_clock system_clock = {1, NULL, sys_mono_ns, sys_wall_ms};

const struct edge_clock *edge_clock_system(void) { return &system_clock; }

static uint64_t man_mono_ns(void *ud) { return ((struct edge_clock_manual *)ud)->mono_ns; }
static uint64_t man_wall_ms(void *ud) { return ((struct edge_clock_manual *)ud)->wall_ms; }

void edge_clock_manual_init(struct edge_clock_manual *m, uint64_t wall_ms)
{
    m->clock = (struct edge_clock){1, m, man_mono_ns, man_wall_ms};
    m->mono_ns = 1000000000u;
    m->wall_ms = wall_ms;
}

void edge_clock_manual_advance(struct edge_clock_manual *m, uint64_t ms)
{
    m->mono_ns += ms * 1000000u;
    m->wall_ms += ms;
}

void edge_hlc_init(struct edge_hlc *h, const struct edge_clock *clock)
{
    h->clock = clock;
    h->last = 0;
}

edge_hlc_t edge_hlc_now(struct edge_hlc *h)
{
    uint64_t pt = h->clock->wall_ms(h->clock->ud) & 0xffffffffffffu;
    if (pt > EDGE_HLC_MS(h->last)) {
        h->last = EDGE_HLC_MAKE(pt, 0);
    } else {
        /* Counter overflow carries into the millisecond part, keeping monotonicity. */
        h->last += 1;
    }
    return h->last;
}

edge_hlc_t edge_hlc_update(struct edge_hlc *h, edge_hlc_t remote)
{
    uint64_t pt = h->clock->wall_ms(h->clock->ud) & 0xffffffffffffu;
    edge_hlc_t base = h->last > remote ? h->last : remote;
    if (pt > EDGE_HLC_MS(base)) {
        h->last = EDGE_HLC_MAKE(pt, 0);
    } else {
        h->last = base + 1;
    }
    return h->last;
}
