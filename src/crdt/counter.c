/* SPDX-License-Identifier: MIT */
/* G-Counter and PN-Counter (Shapiro et al., "A comprehensive study of Convergent and
 * Commutative Replicated Data Types", 2011, §3.1.1-3.1.2) as vector-clock-shaped maps.
 * Overflow is refused, never wrapped: every change is checked on a scratch copy and
 * only then committed. */
#include "crdt/crdt.h"

#include <string.h>

#include "core/alloc.h"

/* Sum of a map's counters into *out; EDGE_EOVERFLOW beyond UINT64_MAX. */
static int vc_sum(const struct edge_vclock *vc, uint64_t *out)
{
    uint64_t s = 0;
    for (size_t i = 0; i < vc->n_entries; i++) {
        if (vc->entries[i].n > UINT64_MAX - s) {
            return EDGE_EOVERFLOW;
        }
        s += vc->entries[i].n;
    }
    *out = s;
    return EDGE_OK;
}

/* Sum of pointwise max(a, b) without building it. */
static int vc_join_sum(const struct edge_vclock *a, const struct edge_vclock *b, uint64_t *out)
{
    uint64_t s = 0;
    for (size_t i = 0; i < a->n_entries; i++) {
        uint64_t v = a->entries[i].n;
        uint64_t w = edge_vclock_get(b, a->entries[i].region);
        v = v > w ? v : w;
        if (v > UINT64_MAX - s) {
            return EDGE_EOVERFLOW;
        }
        s += v;
    }
    for (size_t j = 0; j < b->n_entries; j++) {
        if (edge_vclock_find(a, b->entries[j].region) >= 0) {
            continue;
        }
        if (b->entries[j].n > UINT64_MAX - s) {
            return EDGE_EOVERFLOW;
        }
        s += b->entries[j].n;
    }
    *out = s;
    return EDGE_OK;
}

/* Does p - n fit in int64? */
static int fits_i64(uint64_t p, uint64_t n)
{
    if (p >= n) {
        return p - n <= (uint64_t)INT64_MAX;
    }
    return n - p <= (uint64_t)INT64_MAX + 1u;
}

/* ---- G-Counter ---- */

void edge_crdt_gcounter_init(struct edge_crdt_gcounter *g) { edge_vclock_init(&g->p); }

void edge_crdt_gcounter_close(struct edge_crdt_gcounter *g) { edge_vclock_close(&g->p); }

int edge_crdt_gcounter_increment(struct edge_crdt_gcounter *g, const char *region, uint64_t amount,
                                 struct edge_crdt_gcounter *out_delta)
{
    uint64_t total;
    if (amount == 0 || !edge_vclock_region_valid(region)) {
        return EDGE_EINVAL;
    }
    int rv = vc_sum(&g->p, &total);
    if (rv != EDGE_OK || amount > UINT64_MAX - total) {
        return EDGE_EOVERFLOW; /* per-region count <= total, so it cannot wrap either */
    }
    uint64_t now = edge_vclock_get(&g->p, region) + amount;
    if (out_delta != NULL) {
        rv = edge_vclock_set(&out_delta->p, region, now);
        if (rv != EDGE_OK) {
            return rv;
        }
    }
    rv = edge_vclock_set(&g->p, region, now);
    if (rv != EDGE_OK && out_delta != NULL) {
        edge_vclock_close(&out_delta->p);
    }
    return rv;
}

int edge_crdt_gcounter_merge(struct edge_crdt_gcounter *g, const struct edge_crdt_gcounter *o)
{
    uint64_t total;
    int rv = vc_join_sum(&g->p, &o->p, &total);
    if (rv != EDGE_OK) {
        return rv;
    }
    return edge_vclock_merge(&g->p, &o->p);
}

uint64_t edge_crdt_gcounter_value(const struct edge_crdt_gcounter *g)
{
    uint64_t s = 0;
    (void)vc_sum(&g->p, &s); /* merges and increments keep the sum in range */
    return s;
}

int edge__crdt_gcounter_encode(const struct edge_crdt_gcounter *g, struct edge_buf *out)
{
    return edge_vclock_encode(&g->p, out);
}

int edge__crdt_gcounter_decode(struct edge_crdt_gcounter *g, const uint8_t *p, size_t len, size_t *out_used)
{
    uint64_t total;
    int rv = edge_vclock_decode(&g->p, p, len, out_used);
    if (rv == EDGE_OK && vc_sum(&g->p, &total) != EDGE_OK) {
        edge_vclock_close(&g->p);
        rv = EDGE_ECORRUPT; /* no valid history produces it */
    }
    return rv;
}

/* ---- PN-Counter ---- */

void edge_crdt_pncounter_init(struct edge_crdt_pncounter *c)
{
    edge_vclock_init(&c->p);
    edge_vclock_init(&c->n);
}

void edge_crdt_pncounter_close(struct edge_crdt_pncounter *c)
{
    edge_vclock_close(&c->p);
    edge_vclock_close(&c->n);
}

int edge_crdt_pncounter_add(struct edge_crdt_pncounter *c, const char *region, int sign,
                            uint64_t amount, struct edge_crdt_pncounter *out_delta)
{
    uint64_t sp, sn;
    if (amount == 0 || sign == 0 || !edge_vclock_region_valid(region)) {
        return EDGE_EINVAL;
    }
    if (vc_sum(&c->p, &sp) != EDGE_OK || vc_sum(&c->n, &sn) != EDGE_OK) {
        return EDGE_EOVERFLOW;
    }
    struct edge_vclock *side = sign > 0 ? &c->p : &c->n;
    uint64_t *s = sign > 0 ? &sp : &sn;
    if (amount > UINT64_MAX - *s) {
        return EDGE_EOVERFLOW;
    }
    *s += amount;
    if (!fits_i64(sp, sn)) {
        return EDGE_EOVERFLOW;
    }
    uint64_t now = edge_vclock_get(side, region) + amount;
    int rv;
    if (out_delta != NULL) {
        rv = edge_vclock_set(sign > 0 ? &out_delta->p : &out_delta->n, region, now);
        if (rv != EDGE_OK) {
            return rv;
        }
    }
    rv = edge_vclock_set(side, region, now);
    if (rv != EDGE_OK && out_delta != NULL) {
        edge_crdt_pncounter_close(out_delta);
    }
    return rv;
}

int edge_crdt_pncounter_merge(struct edge_crdt_pncounter *c, const struct edge_crdt_pncounter *o)
{
    uint64_t sp, sn;
    struct edge_vclock p, n;
    int rv;

    edge_vclock_init(&p);
    edge_vclock_init(&n);
    if (vc_join_sum(&c->p, &o->p, &sp) != EDGE_OK || vc_join_sum(&c->n, &o->n, &sn) != EDGE_OK ||
        !fits_i64(sp, sn)) {
        rv = EDGE_EOVERFLOW;
        goto out;
    }
    /* Two maps change together: join into copies, then swap both. */
    rv = edge_vclock_copy(&p, &c->p);
    if (rv == EDGE_OK) {
        rv = edge_vclock_copy(&n, &c->n);
    }
    if (rv == EDGE_OK) {
        rv = edge_vclock_merge(&p, &o->p);
    }
    if (rv == EDGE_OK) {
        rv = edge_vclock_merge(&n, &o->n);
    }
    if (rv != EDGE_OK) {
        goto out;
    }
    struct edge_vclock t = c->p;
    c->p = p;
    p = t;
    t = c->n;
    c->n = n;
    n = t;
out:
    edge_vclock_close(&p);
    edge_vclock_close(&n);
    return rv;
}

int64_t edge_crdt_pncounter_value(const struct edge_crdt_pncounter *c)
{
    uint64_t sp = 0, sn = 0;
    (void)vc_sum(&c->p, &sp);
    (void)vc_sum(&c->n, &sn);
    if (sp >= sn) {
        return (int64_t)(sp - sn);
    }
    uint64_t d = sn - sp; /* <= 2^63 by the fits_i64 invariant */
    return d == (uint64_t)INT64_MAX + 1u ? INT64_MIN : -(int64_t)d;
}

int edge__crdt_pncounter_encode(const struct edge_crdt_pncounter *c, struct edge_buf *out)
{
    int rv = edge_vclock_encode(&c->p, out);
    return rv == EDGE_OK ? edge_vclock_encode(&c->n, out) : rv;
}

int edge__crdt_pncounter_decode(struct edge_crdt_pncounter *c, const uint8_t *p, size_t len, size_t *out_used)
{
    size_t u1 = 0, u2 = 0;
    uint64_t sp, sn;
    int rv = edge_vclock_decode(&c->p, p, len, &u1);
    if (rv == EDGE_OK) {
        rv = edge_vclock_decode(&c->n, p + u1, len - u1, &u2);
    }
    if (rv == EDGE_OK && (vc_sum(&c->p, &sp) != EDGE_OK || vc_sum(&c->n, &sn) != EDGE_OK ||
                          !fits_i64(sp, sn))) {
        rv = EDGE_ECORRUPT;
    }
    if (rv != EDGE_OK) {
        edge_crdt_pncounter_close(c);
        return rv;
    }
    *out_used = u1 + u2;
    return EDGE_OK;
}
